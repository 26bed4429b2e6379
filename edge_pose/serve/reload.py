"""SIGHUP: apply a new, already validated config to a running daemon, as far as that can be done without a restart.

Live: [log], [persons], [tracking], [http] token and limits, [jsonl] (the file is reopened either way, for logrotate).
Restart: [model], [source], [mqtt], [http] enabled/host/port/max_connections, [jsonl] on/off. Those keep their old
values (so /v1/info and /healthz stay truthful) and are named in the log and in /healthz `config.needs_restart`.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, replace

log = logging.getLogger("edge_pose.serve")

HTTP_BIND = ("enabled", "host", "port", "max_connections")


def apply_live(daemon, new) -> list[str]:
    """Apply `new` to `daemon`; return the changed settings that need a restart."""
    from edge_pose.serve.pipeline import box_finder

    old = daemon.cfg
    restart: list[str] = []
    merged = replace(new, origin=new.origin)
    for section in ("model", "source", "mqtt"):
        if asdict(getattr(old, section)) != asdict(getattr(new, section)):
            restart.append(f"[{section}]")
            setattr(merged, section, getattr(old, section))
    http = replace(new.http)
    for key in HTTP_BIND:
        if getattr(old.http, key) != getattr(new.http, key):
            restart.append(f"[http] {key}")
            setattr(http, key, getattr(old.http, key))
    merged.http = http
    if bool(old.jsonl.path) != bool(new.jsonl.path):
        restart.append("[jsonl] path (on/off)")
        merged.jsonl = old.jsonl

    logging.getLogger().setLevel(merged.log.level.upper())
    if asdict(old.persons) != asdict(merged.persons):
        if merged.persons.boxes in ("auto", "detector"):
            daemon.cfg.persons = merged.persons
            daemon._load_detector()  # a detector bundle to (re)load
        else:
            daemon.find_boxes = box_finder(merged.persons.boxes, merged.persons.max_people)
        if daemon.pipeline is not None:
            daemon.pipeline.find_boxes = daemon.find_boxes
    if asdict(old.tracking) != asdict(merged.tracking) and daemon.pipeline is not None:
        t = merged.tracking
        tracker = None
        if t.enabled:
            from edge_pose.serve.tracking import Tracker

            tracker = Tracker(t.match, t.threshold, t.max_missed, t.smoothing, t.min_cutoff, t.beta, t.d_cutoff,
                              sigmas=daemon.model_info.get("sigmas"))
        daemon.pipeline.tracker = tracker  # ids start again: said in the log
        log.info("SIGHUP: tracking %s (ids start again)", "on" if tracker else "off")
    j = merged.jsonl
    for sink in daemon.sinks:
        if sink.name == "jsonl":
            sink.reconfigure(j.path, j.max_bytes, j.backups, j.flush_s)
    daemon.cfg = merged
    return restart
