"""`UiServer`: the UI served by uvicorn on a background thread.

For the places that run the UI beside something else: tests, `everflow dev --ui`, the
demo. `everflow ui` runs uvicorn in the foreground instead. `start()` returns once the
socket listens, with the port bound (ask for port 0 to get a free one).
"""

from __future__ import annotations

import threading
import time

import uvicorn

from streams.errors import ConfigError
from streams.kafka.config import KafkaConfig
from streams.payload import DataConverter
from streams.settings import UiSettings
from streams.ui.app import create_app


class UiServer:
    """The UI for `config` as `settings` says, on a daemon thread; `start()`, `stop()`."""

    def __init__(
        self,
        config: KafkaConfig,
        settings: UiSettings,
        *,
        converter: DataConverter | None = None,
    ) -> None:
        self.settings = settings
        app = create_app(config, settings, converter=converter)
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="everflow-ui", daemon=True)
        self.port = settings.port

    @property
    def address(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        """Start serving; returns the address (`http://host:port`) once it listens."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise ConfigError(
                    f"the UI could not start on {self.settings.host}:{self.settings.port}"
                    " (is the port taken? see the log above)"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the UI did not start within {timeout:.0f} s")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.address

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
