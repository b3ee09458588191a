"""Live updates for the agent inbox: change events, their fan-out, and the SSE stream."""
