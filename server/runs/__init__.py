"""The runs engine: one Postgres-backed queue for background, streaming and waiting runs.

- `server.runs.models`: `RunCreate` (strictly validated body) and `Run` (response DTO).
- `server.runs.service.RunService(runtime, hub)`: the routes' facade over `create` (with the
  checks of `admission`), `queries`, `cancel`, `follow` and `cleanup`, one per process, woken by
  the run worker's hub (`server.app` injects it as `run_service`); `background` holds detached
  work.
- `server.runs.worker.RunWorker(runtime, settings)`: claims and executes runs in each process.
- `server.runs.executor`: one claimed run through the graph, with `invocation` (its config and
  input), `streaming`, `finish` (how it ends) and `handle` (its lease); `server.runs.events`:
  the event log (batched writes, LISTEN/NOTIFY, tailing); `server.runs.repo`: the SQL, one
  module per table (thread rows are `server.threads_repo`'s).
"""
