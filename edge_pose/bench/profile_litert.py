"""Where a .tflite model's time goes on LiteRT: the delegate's partitions, the ops left outside it, requantisations,
and per-op times.

What ai-edge-litert 2.3 exposes from Python: the interpreter's node list (`_get_ops_details()`: every node of the
model plus one DELEGATE node per partition; the nodes a partition replaced stay in the list) and tensor details.
Which nodes run outside the delegate is derived from that list: a node belongs to a partition when it lies between
the partition's inputs and outputs. The runtime has no op profiler reachable from Python (the C library's
LiteRtProfiler belongs to the CompiledModel API and its Python wrapper does not expose it; the Interpreter's
`experimental_force_delegate_node_profiling` only matters with a profiler attached), so per-op times are measured
the best available way: each op alone in a one-op model (same shapes, quantisation and weights) through the same
delegate, once per distinct op signature. That misses cache effects between neighbours and counts the fixed cost of
one invoke per op, so the sum is compared with the whole model's time, and both are reported. Two known biases:
XNNPACK fuses a PAD into the conv after it in the whole graph (measured: PAD + stride-2 depthwise conv as fast as
the conv alone), so a PAD's isolated time is not spent in the model; and a model of ~1300 small ops spends much
of its time in per-op dispatch, which no single op shows.
"""
from __future__ import annotations

import copy
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

BOUNDARY = ("QUANTIZE", "DEQUANTIZE")


def _interpreter(path: str | None, content: bytes | None, threads: int, xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs: dict[str, Any] = {"num_threads": threads}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_path=path, **kwargs) if path else Interpreter(model_content=content, **kwargs)
    it.allocate_tensors()
    return it


def _fill_inputs(it, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for d in it.get_input_details():
        dtype = np.dtype(d["dtype"])
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, d["shape"], endpoint=True).astype(dtype)
        else:
            x = rng.normal(size=d["shape"]).astype(dtype)
        it.set_tensor(d["index"], x)


def _delegated(nodes: list[dict]) -> set[int]:
    """Indices of the model's nodes that some DELEGATE node replaced (walk back from its outputs to its inputs)."""
    producer = {int(t): n["index"] for n in nodes if n["op_name"] != "DELEGATE" for t in n["outputs"]}
    covered: set[int] = set()
    for d in (n for n in nodes if n["op_name"] == "DELEGATE"):
        stop, stack, seen = {int(t) for t in d["inputs"]}, [int(t) for t in d["outputs"]], set()
        while stack:
            t = stack.pop()
            if t in stop or t in seen:
                continue
            seen.add(t)
            p = producer.get(t)
            if p is not None:
                covered.add(p)
                stack += [int(i) for i in nodes[p]["inputs"] if i >= 0]
    return covered


def _scale(it, t: int):
    q = it._get_tensor_details(t, 0)["quantization_parameters"]  # noqa: SLF001
    return (float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"]) == 1 else None


def plan(model: str | bytes, threads: int = 2) -> dict[str, Any]:
    """Partitions, ops outside the delegate, op counts and requantisations of one model (path or bytes) under
    XNNPACK, as LiteRT applies it by default."""
    it = _interpreter(None, model, threads) if isinstance(model, bytes) else _interpreter(str(model), None, threads)
    nodes = it._get_ops_details()  # noqa: SLF001 - the only view of the node list LiteRT gives
    delegated = _delegated(nodes)
    model_nodes = [n for n in nodes if n["op_name"] != "DELEGATE"]
    outside = [n for n in model_nodes if n["index"] not in delegated]
    graph_in = {int(d["index"]) for d in it.get_input_details()}
    graph_out = {int(d["index"]) for d in it.get_output_details()}

    def dtype(t):
        return np.dtype(it._get_tensor_details(t, 0)["dtype"]).name  # noqa: SLF001

    def shape(t):
        return [int(v) for v in it._get_tensor_details(t, 0)["shape"]]  # noqa: SLF001

    quant = Counter()
    for n in model_nodes:
        ins = [int(t) for t in n["inputs"] if t >= 0]
        out = int(n["outputs"][0])
        if n["op_name"] == "QUANTIZE":
            kind = "requantize" if dtype(ins[0]) in ("int8", "uint8", "int16") else "quantize"
            quant[kind if ins[0] not in graph_in else "quantize_model_input"] += 1
        elif n["op_name"] == "DEQUANTIZE":
            quant["dequantize" if out not in graph_out else "dequantize_model_output"] += 1
        elif n["op_name"] == "CONCATENATION" and _scale(it, out):
            if any(_scale(it, t) != _scale(it, out) for t in ins):
                quant["requantising_concatenation"] += 1
    return {
        "nodes": len(model_nodes),
        "delegate_partitions": sum(n["op_name"] == "DELEGATE" for n in nodes),
        "op_counts": dict(Counter(n["op_name"] for n in model_nodes).most_common()),
        "outside_delegate": [{"index": n["index"], "op": n["op_name"],
                              "out_shape": shape(int(n["outputs"][0])), "out_dtype": dtype(int(n["outputs"][0]))}
                             for n in outside],
        "outside_counts": dict(Counter(n["op_name"] for n in outside).most_common()),
        "quantization": dict(quant),
        "float_compute_ops": sum(1 for n in model_nodes if n["op_name"] not in BOUNDARY
                                 and dtype(int(n["outputs"][0])) == "float32"),
    }


def _median_ms(it, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def whole_model_ms(path: str, threads: int, runs: int, builtin: bool = True) -> dict[str, float]:
    """p50 of the whole model with XNNPACK and (optionally) with TFLite's own kernels only, interleaved."""
    its = {"xnnpack": _interpreter(path, None, threads)}
    if builtin:
        its["builtin_kernels"] = _interpreter(path, None, threads, xnnpack=False)
    times: dict[str, list[float]] = defaultdict(list)
    for it in its.values():
        _fill_inputs(it)
        it.invoke()
    for _ in range(runs):
        for name, it in its.items():
            start = time.perf_counter()
            it.invoke()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {f"{k}_p50_ms": float(np.median(v)) for k, v in times.items()}


def _one_op_models(data: bytes):
    """(node index, signature, one-op model bytes) for every operator of subgraph 0."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for k, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        one = schema.ModelT()
        one.version, one.operatorCodes, one.description = model.version, model.operatorCodes, b"one op"
        one.buffers = [schema.BufferT()]
        tensors, remap, feeds, sig = [], {}, [], [name]
        for t in [i for i in (op.inputs if op.inputs is not None else []) if i >= 0] + list(op.outputs):
            if t in remap:
                continue
            tensor = copy.copy(graph.tensors[t])
            buf = model.buffers[tensor.buffer] if tensor.buffer else None
            const = buf is not None and (buf.data is not None and len(buf.data) > 0 or (buf.size or 0) > 0)
            if const:
                if (buf.size or 0) > 0:  # weights stored outside the flatbuffer: cannot be cut out
                    break
                one.buffers.append(buf)
                tensor.buffer = len(one.buffers) - 1
            else:
                tensor.buffer = 0
                if t not in op.outputs:
                    feeds.append(len(tensors))
            remap[t] = len(tensors)
            tensors.append(tensor)
            sig.append((tuple(tensor.shape if tensor.shape is not None else ()), tensor.type, const))
        else:
            new_op = copy.copy(op)
            new_op.inputs = [remap[i] if i >= 0 else -1 for i in (op.inputs if op.inputs is not None else [])]
            new_op.outputs = [remap[i] for i in op.outputs]
            new_op.intermediates = None
            sub = schema.SubGraphT()
            sub.tensors, sub.operators, sub.inputs = tensors, [new_op], feeds
            sub.outputs = [remap[i] for i in op.outputs]
            one.subgraphs = [sub]
            options = op.builtinOptions
            sig.append(repr(sorted(vars(options).items())) if options is not None else None)
            builder = flatbuffers.Builder(1024)
            builder.Finish(one.Pack(builder), file_identifier=b"TFL3")
            yield k, name, tuple(map(str, sig)), bytes(builder.Output())


def op_times(path: str, threads: int, reps: int = 25) -> dict[str, Any]:
    """Each op timed alone (one-op model, XNNPACK as in the whole model), once per distinct signature."""
    data = Path(path).read_bytes()
    measured: dict[tuple, tuple[float, bool]] = {}
    rows = []
    for k, name, sig, blob in _one_op_models(data):
        if sig not in measured:
            try:
                it = _interpreter(None, blob, threads)
                _fill_inputs(it, seed=k)
                delegated = any(n["op_name"] == "DELEGATE" for n in it._get_ops_details())  # noqa: SLF001
                measured[sig] = (_median_ms(it, reps), delegated)
            except (RuntimeError, ValueError) as exc:
                measured[sig] = (float("nan"), False)
                rows.append({"index": k, "op": name, "error": str(exc).splitlines()[0][:120]})
                continue
        ms, delegated = measured[sig]
        rows.append({"index": k, "op": name, "ms": ms, "xnnpack": delegated, "shape": sig[-2]})
    timed = [r for r in rows if "ms" in r and np.isfinite(r["ms"])]
    total = sum(r["ms"] for r in timed)
    by_type: dict[str, dict[str, float]] = defaultdict(lambda: {"count": 0, "ms": 0.0})
    for r in timed:
        by_type[r["op"]]["count"] += 1
        by_type[r["op"]]["ms"] += r["ms"]
    types = [{"op": op, "count": int(v["count"]), "ms": v["ms"], "share": v["ms"] / total if total else 0.0}
             for op, v in sorted(by_type.items(), key=lambda kv: -kv[1]["ms"])]
    return {"method": "isolated one-op models through the same delegate (no LiteRT op profiler in Python)",
            "distinct_signatures": len(measured), "sum_ms": total, "by_type": types,
            "ops": sorted(timed, key=lambda r: -r["ms"]), "errors": [r for r in rows if "error" in r]}


def profile_tflite(path: str, top: int = 15, threads: int = 2, runs: int = 30, per_op: bool = True,
                   builtin: bool = False) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        runtime = f"ai_edge_litert {version('ai-edge-litert')}"
    except PackageNotFoundError:
        runtime = "ai_edge_litert"
    out: dict[str, Any] = {"format": "tflite", "model": str(path), "runtime": runtime, "threads": threads}
    out.update(plan(str(path), threads))
    out["latency"] = whole_model_ms(str(path), threads, runs, builtin=builtin)
    if per_op:
        times = op_times(str(path), threads)
        times["ops"] = times["ops"][:top]
        out["op_times"] = times
    return out
