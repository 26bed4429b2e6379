"""A small bring-your-own pose model for tests: a two-stack hourglass of MobileNetV2 blocks (inverted residuals with
depthwise convs, stride-2 down-sampling, bilinear up-sampling, skip additions), 14 joints at 192x192 like the shared
CPM, seeded weights, written as a TF1 frozen graph. `dead` names a layer whose batch norm shifts every activation
below zero, so its ReLU6 output is all zero on any input (a dead layer, as pruning or a collapsed batch norm leaves)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def build_hourglass_pb(path: Path, dead: str | None = None, channels: int = 16, joints: int = 14,
                       size: int = 192, seed: int = 0) -> Path:
    import tensorflow as tf

    tf1 = tf.compat.v1
    rng = np.random.default_rng(seed)

    def const(values):
        return tf1.constant(np.asarray(values, np.float32))

    def bn(x, name):
        c = int(x.shape[-1])
        beta = np.full(c, -1e3) if dead and name.startswith(dead) else rng.normal(0, 0.1, c)
        y, *_ = tf1.nn.fused_batch_norm(x, const(rng.uniform(0.5, 1.5, c)), const(beta),
                                        mean=const(rng.normal(0, 0.1, c)), variance=const(rng.uniform(0.5, 1.5, c)),
                                        epsilon=1e-3, is_training=False, name=name + "/bn")
        return y

    def weights(*shape, fan):
        return const(rng.normal(0, np.sqrt(2.0 / fan), shape))

    def conv(x, cout, k=1, s=1, name="conv", act=True):
        cin = int(x.shape[-1])
        y = bn(tf1.nn.conv2d(x, weights(k, k, cin, cout, fan=k * k * cin), [1, s, s, 1], "SAME", name=name), name)
        return tf1.nn.relu6(y) if act else y

    def inverted_residual(x, cout, s=1, expand=4, name="ir"):
        cin = int(x.shape[-1])
        y = conv(x, cin * expand, name=name + "/expand")
        y = tf1.nn.depthwise_conv2d(y, weights(3, 3, cin * expand, 1, fan=9), [1, s, s, 1], "SAME",
                                    name=name + "/depthwise")
        y = conv(tf1.nn.relu6(bn(y, name + "/depthwise")), cout, name=name + "/project", act=False)
        return tf1.add(x, y, name=name + "/add") if s == 1 and cin == cout else y

    def hourglass(x, name, depth=2):
        skip = inverted_residual(x, channels, name=name + "/skip")
        y = inverted_residual(x, channels, s=2, name=name + "/down")
        y = hourglass(y, name + "/inner", depth - 1) if depth > 1 else inverted_residual(y, channels,
                                                                                          name=name + "/bottom")
        y = tf1.image.resize_bilinear(y, [int(skip.shape[1]), int(skip.shape[2])], name=name + "/upsample")
        return tf1.add(skip, y, name=name + "/merge")

    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [1, size, size, 3], name="image")
        features = inverted_residual(conv(x, channels, 3, 2, "stem"), channels, s=2, name="pre")
        for stack in range(2):
            out = hourglass(features, f"hg{stack}")
            heat = tf1.nn.conv2d(out, weights(1, 1, channels, joints, fan=channels), [1, 1, 1, 1], "SAME",
                                 name=f"stage_{stack}_out")
            if stack == 0:
                features = conv(tf1.concat([out, heat], axis=3), channels, name="remerge")
        tf1.identity(heat, name="heatmaps")
        with tf1.Session(graph=graph) as session:
            frozen = tf1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["heatmaps"])
    path = Path(path)
    path.write_bytes(frozen.SerializeToString())
    return path
