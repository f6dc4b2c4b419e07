"""The runs engine: one Postgres-backed queue for background, streaming and waiting runs.

- `server.runs.models`: `RunCreate` (strictly validated body) and `Run` (response DTO).
- `server.runs.service.RunService(runtime)`: create / get / list / cancel / follow runs.
- `server.runs.worker.RunWorker(runtime, settings)`: claims and executes runs in each process.
- `server.runs.executor`: one claimed run through the graph; `server.runs.events`: the event
  log (batched writes, LISTEN/NOTIFY, tailing); `server.runs.repo`: the SQL.
"""
