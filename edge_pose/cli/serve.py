"""Run the pose daemon: a camera, stream, video file or image folder in; poses out over HTTP (JSON, server-sent
events, a live page), MQTT and JSON-lines files. Configure with one TOML file (see docs/serve.md); the main keys are
also flags, which win over the file. `--check-config FILE` validates a file and exits (0 if good, 2 with one line if
not).
"""
from __future__ import annotations

HELP = "run the pose daemon (camera/stream/video -> poses over HTTP, SSE, MQTT, JSON lines)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config file (docs/serve.md)")
    parser.add_argument("--check-config", metavar="FILE", help="validate FILE (with any flags given) and exit")
    parser.add_argument("--bundle", metavar="PATH", help="a bundle or a directory of bundles ([model] bundle)")
    parser.add_argument("--detector", metavar="BUNDLE_OR_DIR",
                        help="person detector bundle ([persons] detector; default: one beside the pose bundles)")
    parser.add_argument("--source", metavar="URI",
                        help="camera index, /dev/videoN, video file, rtsp:// or http:// URL, image directory")
    parser.add_argument("--http", metavar="HOST:PORT", help="HTTP listen address (default 127.0.0.1:8080); 'off'")
    parser.add_argument("--mqtt", metavar="HOST:PORT", help="publish to this MQTT broker (enables [mqtt])")
    parser.add_argument("--topic", metavar="NAME", help="MQTT topic (default edge-pose/poses)")
    parser.add_argument("--jsonl", metavar="PATH", help="append results to this JSON-lines file (rotated)")
    parser.add_argument("--token", metavar="TOKEN",
                        help="HTTP bearer token (prefer [http] token_file or $EDGE_POSE_TOKEN: argv is visible)")
    parser.add_argument("--device", metavar="NAME", help="device profile or 'auto' ([model] device)")
    parser.add_argument("--threads", type=int, metavar="N", help="runtime threads, >= 1 ([model] threads)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="[log] level")


def run(args) -> int:
    import logging
    import sys

    from edge_pose.serve.config import load
    from edge_pose.serve.config_schema import ConfigError

    try:
        cfg = load(args.check_config or args.config, args)
    except ConfigError as exc:  # every problem, one line each, so a deploy script sees them all at once
        for line in exc.problems:
            print(f"edge-pose serve: error: {line}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.check_config}: OK (bundle {cfg.model.bundle}, source {cfg.source.uri}, "
              f"http {'%s:%d' % (cfg.http.host, cfg.http.port) if cfg.http.enabled else 'off'}, "
              f"mqtt {'%s:%d %s' % (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.topic) if cfg.mqtt.enabled else 'off'}, "
              f"jsonl {cfg.jsonl.path or 'off'})")
        return 0
    if not getattr(args, "verbose", 0):  # -v on the command line wins over [log] level
        logging.getLogger().setLevel(cfg.log.level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge_pose.serve.daemon import Daemon

    daemon = Daemon(cfg, reload_config=lambda: load(args.config, args) if args.config else None)
    daemon.install_signals()
    return daemon.run()
