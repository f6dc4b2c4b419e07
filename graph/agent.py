"""The checkpointer-less workflow that langgraph.json names `agent` (langgraph dev, Studio).

`langgraph dev` persists state itself; the Steward service builds its own graph with the
Postgres checkpointer through `graph.builder.make_graph`.
"""

from graph.builder import make_graph

graph = make_graph()
