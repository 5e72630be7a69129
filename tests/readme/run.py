#!/usr/bin/env python3
"""The README is a test: every shell block of README.md runs as written, in order, against a fresh
busbar, and every relative link of the README resolves to a file inside the repository.

Usage: run.py PATH/TO/busbar [README.md]

How blocks are marked (the fence's info string; GitHub highlights by its first word only):
  ```sh               runs as written. Blocks run in README order, each in its own `bash` with
                      `set -eo pipefail`, so any failing command (or pipeline) fails the test, which
                      then names the README line and the command. Not caught (bash's rules), so
                      the README does not use them: a failing `$(...)` inside another command's
                      arguments, and a failing background job. Output is not compared: a
                      `# -> ...` comment in a block is an illustration, kept true by review.
  ```sh test=server   starts the server (`busbar serve`): not run; the runner starts the binary it was
                      given with `serve` and the default addresses (127.0.0.1:8080, 127.0.0.1:9092)
                      in a fresh temporary directory, so its data goes to ./busbar-data there. The
                      blocks after it run in that directory with the server up; they fail if the
                      server exits.
  ```sh test=stream   one command that runs until stopped (`--follow`, Server-Sent Events): started,
                      it must still be running after STREAM_SECONDS, then gets SIGINT.
  ```sh test=flags    long-running load (benchmarks): each `busbar ...` command runs as written
                      against the started server and must exit 0 or still be running after
                      FLAGS_SECONDS (then its process group gets SIGINT). busbar checks every flag
                      and their combination before it sends anything and exits 2 on a bad one, so
                      a wrong flag, value or combination fails the block, without minutes of load.
                      (Appending `--help` would check only that the flags exist.)
  ```sh test=skip     needs its own setup or would recurse (the full test suite, `cargo install`,
                      starting peer systems): not run. Say why next to the block.
Other info strings (toml, text, none) are not shell and are not run; a shell fence (sh, bash,
shell) with an unknown test= value is an error, so a typo cannot skip a block.

The commands find `busbar` on PATH (a link to the given binary, standing for `cargo install`), and
`curl` runs with `--fail-with-body`, so an HTTP error answer fails its block as it would a script
using `curl --fail`. The README's other tools (curl, jq, kcat) must be installed; scripts/test.sh
installs them. The ports 8080 and 9092 must be free (the README uses the defaults).
Each block gets BLOCK_TIMEOUT seconds.

Processes: everything the runner starts (the server, each block's bash, each test=flags command)
gets its own session, so its own process group. When a block ends, its group is killed, so a
command it left in the background does not outlive it; on exit, including SIGTERM, SIGINT or
SIGHUP of the runner, every group still alive gets SIGTERM, then SIGKILL after GRACE_SECONDS.

Links: every Markdown link `[..](target)` that is not a URL or an anchor, and every path in
backticks in the prose whose first part is a top-level entry git tracks (`docs/...`,
`crates/...`; not build output such as `target/...`), must exist inside the repository; a path in backticks starting with `../` (outside
the repository) is an error.
"""
import os, re, shutil, signal, socket, subprocess, sys, tempfile, time

STREAM_SECONDS = 3
FLAGS_SECONDS = 3
BLOCK_TIMEOUT = 180
GRACE_SECONDS = 5
SHELLS = {"sh", "bash", "shell"}
TAGS = {None, "server", "stream", "flags", "skip"}
ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


STARTED = []  # every process started, each the leader of its own process group


def spawn(args, **kwargs):
    """Starts `args` in a new session (its own process group), remembered for cleanup."""
    proc = subprocess.Popen(args, start_new_session=True, **kwargs)
    STARTED.append(proc)
    return proc


def signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(proc, sig=signal.SIGKILL):
    """Sends `sig` to `proc`'s group, waits up to GRACE_SECONDS for `proc`, then kills what is left
    of the group (background children included)."""
    if proc.poll() is None:
        signal_group(proc, sig)
        try:
            proc.wait(GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    if proc in STARTED:  # ended: its group id may be reused, so never signal it again
        STARTED.remove(proc)


def cleanup():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the cleanup short
    while STARTED:
        end_group(STARTED.pop(), signal.SIGTERM)


class Stopped(BaseException):
    """The runner got SIGTERM, SIGINT or SIGHUP."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def on_signal(signum, _frame):
    raise Stopped(signum)


class Block:
    def __init__(self, line, info, text):
        self.line = line  # README line of the first command (the fence is the line before)
        self.text = text
        words = info.split()
        self.lang = words[0] if words else ""
        tags = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        self.tag = tags.get("test")

    def where(self):
        return f"README.md:{self.line}"


def blocks(markdown):
    """The fenced blocks of `markdown`, with the prose between them (for the link check)."""
    found, prose, lines = [], [], markdown.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(```+)(.*)$", lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).strip(), i + 2
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            sys.exit(f"README.md:{start - 1}: unclosed code fence")
        i += 1
        found.append(Block(start, info, "\n".join(body) + "\n"))
    return found, "\n".join(prose)


def tracked_top_level():
    """The repository's top-level entries: what git tracks, so build output such as
    `target/release/busbar` (a path the README names, made by a build) is not taken for one."""
    try:
        names = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True, text=True,
                               check=True).stdout.split("\n")
        return {n.split("/")[0] for n in names if n}
    except (OSError, subprocess.CalledProcessError):
        return set(os.listdir(ROOT)) - {"target"}


def check_links(markdown, prose):
    """Errors for relative links and repository paths that do not resolve inside the repository."""
    errors = []
    top = tracked_top_level()

    def inside(target):
        path = os.path.realpath(os.path.join(ROOT, target))
        return (path == ROOT or path.startswith(ROOT + os.sep)) and os.path.exists(path)

    for target in re.findall(r"\]\(([^)\s]+)\)", markdown):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        if not inside(target.split("#")[0]):
            errors.append(f"link ({target}) does not resolve to a file inside the repository")
    for token in re.findall(r"`([^`\s]+)`", prose):
        if token.startswith("../"):
            errors.append(f"`{token}` is outside the repository")
        elif "/" in token and token.split("/")[0] in top and not inside(token):
            errors.append(f"`{token}` does not exist in the repository")
    return errors


def free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Server:
    def __init__(self, binary, cwd):
        for port in (8080, 9092):
            if not free(port):
                sys.exit(f"port {port} is in use; the README's commands need busbar on it")
        self.log = open(os.path.join(cwd, "busbar.log"), "w+")
        self.proc = spawn([binary, "serve"], cwd=cwd, stdout=self.log,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.fail("busbar exited before it was ready")
            self.log.seek(0)
            if "ready in" in self.log.read():
                return
            time.sleep(0.1)
        self.fail("busbar did not become ready in 60 s")

    def fail(self, why):
        end_group(self.proc)
        self.log.seek(0)
        sys.exit(f"{why}; its output:\n{self.log.read()[-3000:]}")

    def check(self):
        if self.proc.poll() is not None:
            self.fail(f"busbar exited ({self.proc.returncode}) during the README's commands")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.fail("busbar did not stop within 30 s of SIGTERM")
        end_group(self.proc)
        if rc != 0:
            self.fail(f"busbar exited {rc} on SIGTERM")


def script(block):
    # The ERR trap names the README line: LINENO counts this header's two lines.
    return ("set -eo pipefail\n"
            f"trap 'rc=$?; echo \"README.md:$(({block.line - 3} + LINENO)): exit $rc: $BASH_COMMAND\" >&2' ERR\n"
            + block.text)


def run_block(block, cwd, env):
    proc = spawn(["bash", "-c", script(block)], cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    try:
        rc = proc.wait(BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        end_group(proc)
        return f"still running after {BLOCK_TIMEOUT} s (a command that waits belongs in a test=stream block)"
    end_group(proc)  # what the block left in the background ends with it
    return None if rc == 0 else f"exit {rc}"


def commands(text):
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.split("\n") if line.strip() and not line.strip().startswith("#")]


def run_stream(block, cwd, env):
    if len(commands(block.text)) != 1:
        return "a test=stream block holds exactly one command"
    proc = spawn(["bash", "-c", script(block)], cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    try:
        rc = proc.wait(STREAM_SECONDS)
        end_group(proc)
        return f"ended (exit {rc}) within {STREAM_SECONDS} s; test=stream is for commands that run until stopped"
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            end_group(proc)
            return "did not stop within 10 s of SIGINT"
    end_group(proc)
    print()
    return None


def run_flags(block, cwd, env):
    for command in commands(block.text):
        if not command.startswith("busbar "):
            return f"test=flags runs busbar commands only, not {command!r}"
        command = re.sub(r"\s+#.*$", "", command)
        with tempfile.TemporaryFile("w+") as err:
            proc = spawn(["bash", "-c", "exec " + command], cwd=cwd, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            try:
                rc = proc.wait(FLAGS_SECONDS)
            except subprocess.TimeoutExpired:
                rc = None  # accepted its flags and is loading: enough
            end_group(proc, signal.SIGINT)
            if rc:
                err.seek(0)
                return f"{command!r} exit {rc}: {err.read().strip()[-2000:]}"
        print(f"{command}: {'ran' if rc == 0 else f'running after {FLAGS_SECONDS} s, stopped'}")
    return None


def tools(work, binary):
    """A bin directory for PATH: `busbar` and a `curl` that fails on HTTP errors."""
    curl = shutil.which("curl")
    missing = [t for t in ("curl", "jq", "kcat") if not shutil.which(t)]
    if missing:
        sys.exit(f"the README's commands need {', '.join(missing)}; install them (scripts/test.sh does)")
    bin_dir = os.path.join(work, "bin")
    os.mkdir(bin_dir)
    os.symlink(os.path.abspath(binary), os.path.join(bin_dir, "busbar"))
    with open(os.path.join(bin_dir, "curl"), "w") as f:
        f.write(f'#!/bin/sh\nexec {curl} --fail-with-body "$@"\n')
    os.chmod(os.path.join(bin_dir, "curl"), 0o755)
    return bin_dir


def main():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        run()
    except Stopped as e:
        cleanup()
        print(f"stopped by signal {e.signum}; every process started was ended", file=sys.stderr)
        sys.exit(128 + e.signum)
    finally:
        cleanup()


def run():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    readme = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "README.md")
    markdown = open(readme).read()
    found, prose = blocks(markdown)
    errors = check_links(markdown, prose)
    for b in found:
        if b.lang in SHELLS and b.tag not in TAGS:
            errors.append(f"{b.where()}: unknown tag test={b.tag} (one of {sorted(t for t in TAGS if t)})")
    if errors:
        sys.exit("README check failed:\n  " + "\n  ".join(errors))

    runners = {None: run_block, "stream": run_stream, "flags": run_flags}
    server, ran = None, 0
    with tempfile.TemporaryDirectory() as work:
        # The caller's BUSBAR_* settings (BUSBAR_SERVER, BUSBAR_OUTPUT, ...) would point the
        # README's commands elsewhere or change what they print.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BUSBAR_")}
        env = dict(clean, PATH=tools(work, binary) + os.pathsep + os.environ["PATH"])
        cwd = os.path.join(work, "cwd")
        os.mkdir(cwd)
        try:
            for b in found:
                if b.lang not in SHELLS or b.tag == "skip":
                    continue
                if b.tag == "server":
                    server = server or Server(binary, cwd)
                    continue
                print(f"\n== {b.where()}" + (f" (test={b.tag})" if b.tag else ""), flush=True)
                error = runners[b.tag](b, cwd, env)
                if server:
                    server.check()
                if error:
                    sys.exit(f"FAILED {b.where()}: {error}")
                ran += 1
            if server:
                server.stop()
                server = None
        finally:
            cleanup()
    print(f"\nREADME: {ran} blocks ran as written, links resolve inside the repository")


if __name__ == "__main__":
    main()
