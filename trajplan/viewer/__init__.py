"""``trajplan view``: a local interactive planning viewer (session, HTTP server, static page)."""
