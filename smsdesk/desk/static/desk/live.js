// Live updates over SSE: filled in by the live app.
