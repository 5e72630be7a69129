#!/usr/bin/env python3
"""Tests of the README runner (run.py) on small READMEs of their own:
- a test=flags command with a flag value busbar refuses fails its block (the value exists as a
  flag, so `--help` alone accepted it);
- what a block leaves in the background ends with the block;
- SIGTERM to the runner ends every process it started, and the runner exits 128 + 15.

Usage: [BUSBAR_BIN=PATH/TO/busbar] test_run.py [-v] [TEST...]   (default target/debug/busbar;
README_RUNNER=PATH runs these tests against another runner, e.g. an older run.py)
"""
import os, signal, subprocess, sys, tempfile, time, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.environ.get("README_RUNNER") or os.path.join(HERE, "run.py")  # another to compare
ROOT = os.path.realpath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("BUSBAR_BIN") or os.path.join(ROOT, "target", "debug", "busbar")


def alive(pid):
    """Whether `pid` runs (a zombie waiting for its parent to reap it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class Runner(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.pidfile = os.path.join(self.dir.name, "pids")
        self.env = dict(os.environ, PIDFILE=self.pidfile)

    def tearDown(self):
        if hasattr(self, "out"):
            self.out.close()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.dir.cleanup()

    def readme(self, text):
        path = os.path.join(self.dir.name, "README.md")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, readme):
        """The runner on `readme`, its output to a file (a pipe would stay open as long as any
        process it started lives)."""
        self.out = open(os.path.join(self.dir.name, "out"), "w+")
        return subprocess.Popen([sys.executable, RUN, BIN, readme], env=self.env,
                                stdout=self.out, stderr=subprocess.STDOUT)

    def run_runner(self, readme):
        runner = self.start(readme)
        return runner.wait(120), self.output()

    def output(self):
        self.out.seek(0)
        return self.out.read()

    def pids(self):
        if not os.path.exists(self.pidfile):
            return []
        with open(self.pidfile) as f:
            return [int(p) for p in f.read().split()]

    def test_a_flag_value_busbar_refuses_fails_the_block(self):
        readme = self.readme("```sh test=flags\nbusbar bench produce --size 4 --count 10\n```\n")
        rc, out = self.run_runner(readme)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("FAILED README.md:2", out)
        self.assertIn("--size 4", out)

    def test_what_a_block_leaves_in_the_background_ends_with_it(self):
        readme = self.readme('```sh\nsleep 300 &\necho $! >> "$PIDFILE"\n```\n')
        rc, out = self.run_runner(readme)
        self.assertEqual(rc, 0, out)
        (pid,) = self.pids()
        deadline = time.time() + 10
        while alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(pid), "the block's background sleep outlived the runner")

    def test_sigterm_to_the_runner_ends_every_process_it_started(self):
        readme = self.readme('```sh\nsleep 300 &\necho $! $$ >> "$PIDFILE"\nwait\n```\n')
        runner = self.start(readme)
        deadline = time.time() + 60
        while len(self.pids()) < 2 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(self.pids()), 2, "the block did not start")
        runner.send_signal(signal.SIGTERM)
        self.assertEqual(runner.wait(60), 128 + signal.SIGTERM, self.output())
        deadline = time.time() + 10
        while any(alive(p) for p in self.pids()) and time.time() < deadline:
            time.sleep(0.05)
        left = [p for p in self.pids() if alive(p)]
        self.assertEqual(left, [], "processes left running after the runner was stopped")

    def test_the_callers_busbar_settings_do_not_reach_the_blocks(self):
        self.env["BUSBAR_SERVER"] = "http://127.0.0.1:1"
        readme = self.readme('```sh\ntest -z "${BUSBAR_SERVER:-}"\n```\n')
        rc, out = self.run_runner(readme)
        self.assertEqual(rc, 0, out)

    def test_an_ended_group_is_never_signalled_again(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("runner_under_test", RUN)
        runner = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(runner)
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        self.addCleanup(lambda: [signal.signal(k, v) for k, v in saved.items()])
        proc = runner.spawn(["true"])
        proc.wait()
        runner.end_group(proc)
        sent = []
        real, runner.os.killpg = runner.os.killpg, lambda pid, sig: sent.append(pid)
        try:
            runner.cleanup()
        finally:
            runner.os.killpg = real
        self.assertEqual(sent, [], "cleanup signalled a group that had already ended")


if __name__ == "__main__":
    unittest.main()
