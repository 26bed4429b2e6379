"""Prometheus text exposition (format 0.0.4) written by hand: counters, gauges, histograms and an info metric.

Written here rather than pulled from prometheus_client to keep the device install to numpy + OpenCV (+ paho for MQTT).
Gauges may read a callable at scrape time so that components own their state and the registry only reports it.
"""
from __future__ import annotations

import math
import threading
from typing import Callable, Iterable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}" if body else ""


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...] = ()):
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name, help, labelnames=()):
        super().__init__(name, help, labelnames)
        self._values: dict[tuple, float] = {} if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(zip(self.labelnames, k))} {_num(v)}" for k, v in items]


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name, help, labelnames=(), read: Callable[[], float] | None = None):
        super().__init__(name, help, labelnames)
        self._values: dict[tuple, float] = {}
        self._read = read

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = float(value)

    def render(self) -> list[str]:
        if self._read is not None:
            items = [((), float(self._read()))]
        else:
            with self._lock:
                items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(zip(self.labelnames, k))} {_num(v)}" for k, v in items]


class CounterFunc(Gauge):
    """A counter owned by a component (e.g. messages the MQTT sink dropped), read at scrape time."""

    kind = "counter"


class Info(Gauge):
    """`name_info{k="v",...} 1`: which backend, device and model are in use."""

    def __init__(self, name, help):
        super().__init__(name if name.endswith("_info") else name + "_info", help)
        self._info: dict[str, str] = {}

    def set_info(self, **info) -> None:
        with self._lock:
            self._info = {k: str(v) for k, v in info.items()}

    def render(self) -> list[str]:
        with self._lock:
            info = dict(self._info)
        return self.header() + ([f"{self.name}{_labels(sorted(info.items()))} 1"] if info else [])


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name, help, labelnames=(), buckets=LATENCY_BUCKETS):
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._series: dict[tuple, list] = {}  # key -> [bucket counts..., sum, count]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            s = self._series.setdefault(key, [0] * len(self.buckets) + [0.0, 0])
            for i, upper in enumerate(self.buckets):
                if value <= upper:
                    s[i] += 1
            s[-2] += value
            s[-1] += 1

    def count(self, **labels: str) -> int:
        with self._lock:
            s = self._series.get(self._key(labels))
            return s[-1] if s else 0

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for key, s in items:
            base = list(zip(self.labelnames, key))
            for upper, n in zip(self.buckets, s):
                lines.append(f"{self.name}_bucket{_labels(base + [('le', _num(upper))])} {n}")
            lines.append(f"{self.name}_sum{_labels(base)} {_num(s[-2])}")
            lines.append(f"{self.name}_count{_labels(base)} {s[-1]}")
        return lines


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name, help, labelnames=()) -> Counter:
        return self.add(Counter(name, help, labelnames))

    def gauge(self, name, help, labelnames=(), read=None) -> Gauge:
        return self.add(Gauge(name, help, labelnames, read))

    def counter_func(self, name, help, read) -> CounterFunc:
        return self.add(CounterFunc(name, help, (), read))

    def histogram(self, name, help, labelnames=(), buckets=LATENCY_BUCKETS) -> Histogram:
        return self.add(Histogram(name, help, labelnames, buckets))

    def info(self, name, help) -> Info:
        return self.add(Info(name, help))

    def render(self) -> str:
        out: list[str] = []
        for metric in self._metrics.values():
            out.extend(metric.render())
        return "\n".join(out) + "\n"
