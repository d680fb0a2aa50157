"""Build helpers for setup.py: a content-addressed cache of the compiled extension, and
compact progress lines while ninja compiles.

No torch import here: setup.py passes what it knows, so that tests/test_build.py can check
the cache key without building anything.

Cache. build/byzagg-cache/ (ignored) keeps the last few compiled byzagg._C libraries, each
named by a key: the SHA-256 of every input that can change the compiled bytes (see
`cache_key`): the contents of every file under csrc/, setup.py and this file; the extension's
sources, include and library directories, macros and compile/link flags as torch's
BuildExtension hands them to the compiler; the compiler (path and `--version`), nvcc; torch
(version, git commit, CUDA/HIP version, C++ ABI); Python (version, ABI tag, extension
suffix, machine, the compiler settings of its build); the GPUs' compute capabilities when
torch picks the CUDA archs from them; the build switches and compiler variables of the
environment (ENV_KEYS); the source tree's path. Any difference gives another key, so a
stale library is never used: at worst a build compiles again. `pip install .` and then
`pip install -e .` (whose build directory is a fresh temporary one) compile once.

An entry is complete or absent: the library is copied to a temporary name in the cache
directory, its SHA-256 is written next to it (<key>.json, itself written to a temporary name
and renamed), and only then is the library renamed to <key>.so (rename is atomic within a
directory). A lookup needs both files and checks the library's SHA-256 against the record;
anything else is a miss (and the broken entry is removed).

BYZAGG_BUILD_CACHE=0 turns the cache off; BYZAGG_BUILD_CACHE=DIR puts it elsewhere.
BYZAGG_BUILD_VERBOSE=1 shows ninja's full compiler command lines instead of progress lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping

CACHE_FORMAT = 1
KEEP_ENTRIES = 4
HEARTBEAT_S = 60.0

# Environment variables that change what is compiled, or how.
ENV_KEYS = (
    "BYZAGG_DEBUG",
    "BYZAGG_SANITIZE",
    "BYZAGG_NO_NATIVE",
    "FORCE_CUDA",
    "TORCH_CUDA_ARCH_LIST",
    "CUDA_HOME",
    "CUDA_PATH",
    "CC",
    "CXX",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "LDSHARED",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "LIBRARY_PATH",
    "NVCC_APPEND_FLAGS",
    "NVCC_PREPEND_FLAGS",
)

SOURCE_SUFFIXES = (".cpp", ".cc", ".cxx", ".c", ".cu", ".sycl")


def say(message: str) -> None:
    print(f"byzagg build: {message}", flush=True)


# ----------------------------------------------------------------------------- cache key


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_tree(root: Path) -> str:
    """SHA-256 over every file under root: relative path, size and contents, in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(root).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        data = path.read_bytes()
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(str(len(data)).encode() + b"\0")
        digest.update(data)
    return digest.hexdigest()


def extension_fields(ext) -> dict:
    """What setuptools and torch hand the compiler and linker for one Extension."""
    fields = {}
    for name in (
        "name",
        "sources",
        "include_dirs",
        "define_macros",
        "undef_macros",
        "library_dirs",
        "libraries",
        "runtime_library_dirs",
        "extra_objects",
        "extra_compile_args",
        "extra_link_args",
        "export_symbols",
        "depends",
        "language",
        "py_limited_api",
    ):
        fields[name] = getattr(ext, name, None)
    # tuples -> lists, so that the JSON is the same however the values were built
    return json.loads(json.dumps(fields, default=str))


def _command_output(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        return f"unavailable: {type(error).__name__}"
    return (result.stdout + result.stderr).strip()


def toolchain(compiler: str, nvcc: str | None = None) -> dict:
    """The compiler torch will call (CXX or c++), and nvcc when CUDA is compiled."""
    words = shlex.split(compiler) or ["c++"]
    info = {
        "compiler": compiler,
        "compiler_path": shutil.which(words[0]),
        "compiler_version": _command_output(words + ["--version"]),
        "compiler_target": _command_output(words + ["-dumpmachine"]),
    }
    if nvcc:
        info["nvcc_path"] = shutil.which(nvcc) or nvcc
        info["nvcc_version"] = _command_output([nvcc, "--version"])
    return info


def cache_key(root: Path, fields: dict, tools: dict, versions: dict, env: Mapping[str, str]) -> tuple[str, dict]:
    """(key, inputs): the key is the SHA-256 of `inputs`, every input of the compiled library.

    fields: extension_fields(ext); tools: toolchain(...); versions: torch and Python versions
    (setup.py); env: the environment (only ENV_KEYS are read).
    """
    root = Path(root)
    inputs = {
        "format": CACHE_FORMAT,
        "root": str(root.resolve()),
        "csrc": hash_tree(root / "csrc"),
        "setup.py": file_sha256(root / "setup.py"),
        "native_build.py": file_sha256(Path(__file__)),
        "extension": fields,
        "toolchain": tools,
        "versions": versions,
        "env": {name: env.get(name) for name in ENV_KEYS},
    }
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:40], inputs


# ----------------------------------------------------------------------------- cache store


def cache_directory(root: Path, env: Mapping[str, str] = os.environ) -> Path | None:
    setting = env.get("BYZAGG_BUILD_CACHE", "").strip()
    if setting.lower() in ("0", "off", "no", "false"):
        return None
    return Path(setting) if setting else Path(root) / "build" / "byzagg-cache"


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy to a temporary name in target's directory, then rename: target is whole or absent."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        shutil.copyfile(source, temporary)
        shutil.copymode(source, temporary)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def fetch(directory: Path, key: str, target: Path) -> bool:
    """Copy the cached library for key to target; False (a miss) unless the entry is complete."""
    library, record = directory / f"{key}.so", directory / f"{key}.json"
    try:
        expected = json.loads(record.read_text())["sha256"]
        if file_sha256(library) != expected:
            say(f"cache entry {key[:12]} is damaged (checksum), compiling again")
            for path in (library, record):
                with contextlib.suppress(OSError):
                    path.unlink()
            return False
        _atomic_copy(library, Path(target))
    except (OSError, ValueError, KeyError):
        return False
    with contextlib.suppress(OSError):
        os.utime(library)  # most recently used: kept by prune()
    return True


def store(directory: Path, key: str, built: Path, inputs: dict) -> None:
    """Add the freshly built library under key (see the module docstring for the order)."""
    library, record = directory / f"{key}.so", directory / f"{key}.json"
    directory.mkdir(parents=True, exist_ok=True)
    staged = directory / f".{key}.so.tmp-{os.getpid()}"
    try:
        shutil.copyfile(built, staged)
        shutil.copymode(built, staged)
        staged_record = directory / f".{key}.json.tmp-{os.getpid()}"
        staged_record.write_text(json.dumps({"sha256": file_sha256(staged), "inputs": inputs}, indent=1) + "\n")
        os.replace(staged_record, record)
        os.replace(staged, library)
    finally:
        for path in directory.glob(f".{key}.*.tmp-{os.getpid()}"):
            with contextlib.suppress(OSError):
                path.unlink()
    prune(directory)


def prune(directory: Path, keep: int = KEEP_ENTRIES) -> None:
    entries = sorted(directory.glob("*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
    for library in entries[keep:]:
        for path in (library, library.with_suffix(".json")):
            with contextlib.suppress(OSError):
                path.unlink()


# ----------------------------------------------------------------------------- progress


def _source_of(words: list[str]) -> str | None:
    """The file a compiler command compiles: the argument after -c (sh -c 'cmd' unwrapped)."""
    if len(words) == 3 and words[1] == "-c" and words[0].endswith("sh"):
        try:
            words = shlex.split(words[2])
        except ValueError:
            return None
    for flag, value in zip(words, words[1:]):
        if flag == "-c" and value.endswith(SOURCE_SUFFIXES):
            return value
    return None


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _cmdline(pid: int) -> list[str]:
    try:
        return [w for w in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if w]
    except OSError:
        return []


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class NinjaProgress:
    """Runs ninja in a build directory and prints one line when a file starts compiling
    (seen in /proc on Linux), one when it is done ("k/N"), and a line every minute that
    names the files still compiling. Compiler diagnostics pass through unchanged."""

    STATUS = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")

    def __init__(self, root: Path, out=None):
        self.root = Path(root).resolve()
        self.out = out
        self.lock = threading.Lock()
        self.started_at: dict[str, float] = {}
        self.running: set[str] = set()
        self.done = 0
        self.total: int | None = None
        self.t0 = time.monotonic()
        self.last_line = self.t0
        self.seen_warnings: set[str] = set()

    def show(self, path: str) -> str:
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return path

    def emit(self, message: str) -> None:
        with self.lock:
            now = time.monotonic()
            self.last_line = now
            stream = self.out or sys.stdout
            print(f"byzagg build [{_clock(now - self.t0):>5}] {message}", file=stream, flush=True)

    def count(self) -> str:
        return f"{self.done}/{self.total if self.total is not None else '?'}"

    def watch(self, pid: int, stop: threading.Event) -> None:
        seen: set[int] = set()
        while not stop.wait(0.5):
            for child in _children(pid):
                if child in seen:
                    continue
                seen.add(child)
                source = _source_of(_cmdline(child))
                if source is None:
                    continue
                name = self.show(source)
                with self.lock:
                    self.started_at.setdefault(name, time.monotonic())
                    self.running.add(name)
                self.emit(f"{self.count()} done, compiling {name}")
            if time.monotonic() - self.last_line >= HEARTBEAT_S:
                now = time.monotonic()
                with self.lock:
                    running = sorted(self.running, key=lambda n: self.started_at[n])
                    busy = ", ".join(f"{n} ({_clock(now - self.started_at[n])})" for n in running)
                self.emit(f"{self.count()} done, still compiling {busy or '...'}")

    def finished(self, name: str, done: int, total: int, failed: bool) -> None:
        with self.lock:
            self.done, self.total = done, total
            self.running.discard(name)
            began = self.started_at.get(name)
        took = f" after {_clock(time.monotonic() - began)}" if began is not None else ""
        if failed:
            self.emit(f"FAILED: {name}{took}")
        else:
            self.emit(f"{self.count()} done: {name}{took.replace('after', 'in')}")

    def diagnostics(self, block: list[str]) -> None:
        """Print a step's compiler output, except warnings already printed for an earlier file
        (torch's headers give every file the same ones): those become one short line."""
        if not block:
            return
        warnings = {line for line in block if ": warning:" in line}
        failed = any(": error" in line or line.startswith(("FAILED", "ninja:")) for line in block)
        if warnings and warnings <= self.seen_warnings and not failed:
            self.emit(f"(the same {len(warnings)} compiler warning(s) as above, not repeated)")
        else:
            self.seen_warnings |= warnings
            with self.lock:
                print("\n".join(block), flush=True, file=self.out or sys.stdout)
        block.clear()

    def planned(self, command: list[str], cwd: str, env: dict) -> int | None:
        """How many compile steps ninja will run (a dry run)."""
        try:
            result = subprocess.run(command + ["-n"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        totals = [int(m.group(2)) for m in map(self.STATUS.match, result.stdout.splitlines()) if m]
        return max(totals, default=0) if result.returncode == 0 else None

    def run(self, build_directory: str, error_prefix: str) -> None:
        command = ["ninja", "-v"]
        jobs = os.environ.get("MAX_JOBS", "")
        if jobs.isdigit():
            command += ["-j", jobs]
        env = dict(os.environ, NINJA_STATUS="[%f/%t] ")
        self.total = self.planned(command, build_directory, env)
        if self.total == 0:
            self.emit("objects up to date, nothing to compile")
            return
        self.emit(
            f"compiling {self.total if self.total is not None else 'the'} files "
            f"({'MAX_JOBS=' + jobs if jobs.isdigit() else 'ninja default jobs'}); "
            "a line per file started and finished"
        )
        sys.stdout.flush()
        process = subprocess.Popen(
            command,
            cwd=build_directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        stop = threading.Event()
        watcher = threading.Thread(target=self.watch, args=(process.pid, stop), daemon=True)
        watcher.start()
        # ninja prints "[k/N] command" when a step ends, and "FAILED: ..." right after it when
        # the step failed: a status line is held until the next line or 0.2 s of silence.
        lines: queue.Queue = queue.Queue()
        def read() -> None:
            for text in process.stdout:
                lines.put(text)
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        pending = None
        block: list[str] = []  # what the compiler printed for the step that just ended
        try:
            while True:
                try:
                    line = lines.get(timeout=0.2) if (pending or block) else lines.get()
                except queue.Empty:
                    if pending:
                        self.finished(*pending, failed=False)
                        pending = None
                    self.diagnostics(block)
                    continue
                if pending:
                    self.finished(*pending, failed=line is not None and line.startswith("FAILED"))
                    pending = None
                if line is None:
                    break
                line = line.rstrip("\n")
                match = self.STATUS.match(line)
                source = _source_of(shlex.split(match.group(3))) if match else None
                if match and source:
                    self.diagnostics(block)
                    pending = (self.show(source), int(match.group(1)), int(match.group(2)))
                elif line.strip():
                    block.append(line)
            self.diagnostics(block)
            returncode = process.wait()
        finally:
            stop.set()
            watcher.join()
            if process.poll() is None:
                process.kill()
                process.wait()
        if returncode != 0:
            raise RuntimeError(f"{error_prefix}: ninja exited with status {returncode} (compiler output above)")
        self.emit(f"compiled {self.count()} files, linking")


@contextlib.contextmanager
def ninja_progress(cpp_extension_module, root: Path):
    """Within the block, torch's ninja runner prints progress lines instead of command lines.

    Replaces torch.utils.cpp_extension._run_ninja_build (a private function: when a torch
    has no such function, or on Windows, or with BYZAGG_BUILD_VERBOSE=1, torch's own runner
    is left in place)."""
    original = getattr(cpp_extension_module, "_run_ninja_build", None)
    verbose = os.environ.get("BYZAGG_BUILD_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")
    if original is None or verbose or os.name != "posix":
        yield
        return

    def run_ninja_build(build_directory, verbose=True, error_prefix="Error compiling objects for extension"):
        NinjaProgress(root).run(build_directory, error_prefix)

    cpp_extension_module._run_ninja_build = run_ninja_build
    try:
        yield
    finally:
        cpp_extension_module._run_ninja_build = original
