"""The offline scheduler simulator: `python -m control_api.simulate` replays a scenario
against one or more strategies and reports GPU-hours, estimated earnings, deploy latency and
preemptions side by side."""
