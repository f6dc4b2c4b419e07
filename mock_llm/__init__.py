"""The scripted mock LLM: an OpenAI-compatible server and an in-process demo chat model.

`policy.reply` holds the deterministic behaviour; `server` serves it over HTTP (with fault
injection) and `demo_model.DemoChatModel` runs it in-process. Import those submodules directly:
this package imports nothing heavy.
"""
