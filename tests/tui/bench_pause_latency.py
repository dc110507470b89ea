"""Key press -> PAUSING latency in a Pilot run of a real Step D (medium demo data, batch 20)."""
import asyncio, time, statistics, tempfile, sys
from pathlib import Path
from console.tui.app import OpsConsoleApp
from console.tui.widgets import StatusHeader
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.events import JobState
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse

async def main():
    root = Path(tempfile.mkdtemp())
    s = load_settings(runtime_dir=root / "rt", clickhouse_path=root / "ch")
    generate_demo(open_clickhouse(s), "medium", 7)
    app = OpsConsoleApp(s, job=EnrichmentJob(["D"], batch_size=20, remote_checkpoints=False), gates_interval=None)
    lat_action, lat_header = [], []
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        orig = screen.action_pause
        for i in range(5):
            await screen.wait_for(lambda v: v.state is JobState.RUNNING and "D" in v.steps and (v.steps["D"].total or 0) > 0)
            marks = {}
            def patched():
                marks["action"] = time.perf_counter()
                orig()
                marks["after"] = time.perf_counter()
            screen.action_pause = patched
            t0 = time.perf_counter()
            app._driver.send_message(__import__("textual.events", fromlist=["Key"]).Key("p", "p"))
            while "action" not in marks:
                await asyncio.sleep(0)
            # header content is set synchronously in the action; measure until it's painted in the next frame
            hdr = screen.query_one("#header", StatusHeader)
            lat_action.append((marks["after"] - t0) * 1000)
            assert "PAUS" in str(hdr.render())
            await screen.wait_for(lambda v: v.state is JobState.PAUSED)
            screen.action_pause = orig
            await pilot.press("r")
    print("key->header text PAUSING (ms): " + ", ".join(f"{x:.1f}" for x in lat_action), "median", f"{statistics.median(lat_action):.1f}")
    app.session.control.stop()

asyncio.run(main())
