"""Open a page in WebKit (WebKitGTK, the engine of Safari and of every iOS browser), run scripts in it, and save a
screenshot. Run by the *system* Python, which has PyGObject and WebKitGTK from Debian's packages, inside a
virtual display:

    xvfb-run -a /usr/bin/python3 tests/webkit_page.py PAGE.html OUT.json [--screenshot OUT.png]
        [--width 1280] [--height 1000] [--script JS ...]

Writes ``{"results": [...], "error": null}``: each script's value (its completion value, JSON-encoded by
the script itself); the console messages the page logged go to stderr (WebKit writes ``URL:LINE:COL: CONSOLE ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("WebKit2", "4.1")
from gi.repository import GLib, Gtk, WebKit2  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("page")
    p.add_argument("out")
    p.add_argument("--screenshot")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=1000)
    p.add_argument("--script", action="append", default=[])
    p.add_argument("--timeout", type=int, default=60)
    p.add_argument("--settle-ms", type=int, default=200, help="wait after the load event before the scripts")
    args = p.parse_args()

    window = Gtk.OffscreenWindow()
    view = WebKit2.WebView()
    view.get_settings().set_enable_write_console_messages_to_stdout(True)
    view.set_size_request(args.width, args.height)
    window.add(view)
    window.show_all()
    state = {"results": [], "error": None}
    scripts = list(args.script)

    def finish() -> None:
        Gtk.main_quit()

    def snapshot_done(v, res, _data) -> None:
        try:
            v.get_snapshot_finish(res).write_to_png(args.screenshot)
        except Exception as e:  # noqa: BLE001 - GLib errors, or no cairo bindings (python3-gi-cairo)
            state["error"] = f"snapshot: {e}"
        finish()

    def next_script() -> None:
        if scripts:
            view.evaluate_javascript(scripts.pop(0), -1, None, None, None, script_done, None)
        elif args.screenshot:
            region, options = WebKit2.SnapshotRegion.VISIBLE, WebKit2.SnapshotOptions.NONE
            view.get_snapshot(region, options, None, snapshot_done, None)
        else:
            finish()

    def script_done(v, res, _data) -> None:
        try:
            state["results"].append(json.loads(v.evaluate_javascript_finish(res).to_string()))
        except GLib.Error as e:
            state["error"] = f"script: {e.message}"
            finish()
            return
        next_script()

    def loaded(_view, event) -> None:
        if event == WebKit2.LoadEvent.FINISHED:
            GLib.timeout_add(args.settle_ms, lambda: next_script() and False)  # let the load event's handlers run

    def failed(_view, _event, uri, error) -> bool:
        state["error"] = f"load {uri}: {error.message}"
        finish()
        return True

    view.connect("load-changed", loaded)
    view.connect("load-failed", failed)
    view.load_uri("file://" + os.path.abspath(args.page))
    GLib.timeout_add_seconds(args.timeout, lambda: (state.update(error="timed out"), finish()) and False)
    Gtk.main()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(state, f)
    return 1 if state["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
