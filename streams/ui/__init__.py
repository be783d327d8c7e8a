"""The Web UI (`everflow ui`): every run, its history, what it waits on, and the buttons
to repair it.

Server-rendered HTML (Starlette + Jinja2, served by uvicorn) over what the rest of the
project already keeps: the run index (`streams.visibility`) for lists and counts, the
`history` topic for a run's events (read in pages, so a 50,000-event history opens at
once), the Client for questions to a run's processor (describe, the `__stack_trace` query)
and for every action, which is a command on `commands` like any other client's, so audits
see it. Pages read without JavaScript; the small scripts in `static/` (written for this
project, nothing fetched at run time) add live updates over server-sent events, countdowns,
confirmations and the history's scrolling.

- `app`: `create_app(config, settings)`, the Starlette application and its routes;
- `context`: `Ui`, what every page shares (the Client, the index, the templates);
- `security`: sign-in (token or basic auth) and protection against cross-site requests;
- `server`: `UiServer`, uvicorn on a thread (tests, `everflow dev`, the demo);
- `runs`: the runs list (filter, chips, sorting, keyset pages, live);
- `run`, `run_model`, `history`, `history_pages`: a run's page, the facts it gathers (index,
  processor, history), the pure views of its history (waits-on, compact, timeline, payloads)
  and the reader of history pages from Kafka;
- `actions`: the forms and routes that send commands (one run, one activity, a batch);
- `workers`: the workers page and the dead letters (list, re-publish).
"""

from __future__ import annotations

from streams.ui.app import create_app
from streams.ui.server import UiServer

__all__ = ["UiServer", "create_app"]
