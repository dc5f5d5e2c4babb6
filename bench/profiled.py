"""An app loaded beside nlbflow by `python -m bench.arp --profile`: cProfile of the whole controller process.

The profiler covers every greenthread of the process (they share one OS thread): the framework's receive
loop and OpenFlow parser, the event loop, the app's handler, its sender, the socket writer. It starts when
the file `$NLBFLOW_PROFILE.start` appears and stops, writing its stats to `$NLBFLOW_PROFILE`, when
`$NLBFLOW_PROFILE.stop` appears. Never part of a deployment.
"""

from __future__ import annotations

import cProfile
import os
from pathlib import Path

from ryu_apps.compat import BaseApp, hub

POLL_SECONDS = 0.05


class ProfiledController(BaseApp):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.output = Path(os.environ["NLBFLOW_PROFILE"])
        hub.spawn(self._profile)

    def _profile(self) -> None:
        start, stop = (
            self.output.with_name(self.output.name + ".start"),
            self.output.with_name(self.output.name + ".stop"),
        )
        while not start.exists():
            hub.sleep(POLL_SECONDS)
        profiler = cProfile.Profile()
        profiler.enable()
        while not stop.exists():
            hub.sleep(POLL_SECONDS)
        profiler.disable()
        profiler.dump_stats(str(self.output))
