"""gepetto, the scheduler: event-driven chute placement with a pluggable strategy
(runtime contract §9). It imports no FastAPI; `python -m control_api scheduler` runs it."""
