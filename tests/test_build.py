"""The build helpers (tools/native_build.py) and the build requirements; nothing is compiled
here except, in one test, three one-line C++ files (skipped without ninja and a compiler)."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_native_build():
    spec = importlib.util.spec_from_file_location("byzagg_native_build_test", ROOT / "tools" / "native_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nb = load_native_build()

FIELDS = {
    "name": "byzagg._C",
    "sources": ["csrc/ops.cpp", "csrc/cpu/isa.cpp"],
    "include_dirs": ["/x/csrc", "/venv/torch/include"],
    "extra_compile_args": {"cxx": ["-O3", "-std=c++17", "-ffp-contract=off", "-DTORCH_EXTENSION_NAME=_C"]},
    "extra_link_args": ["-fopenmp"],
}
TOOLS = {"compiler": "c++", "compiler_path": "/usr/bin/c++", "compiler_version": "g++ 12.2.0"}
VERSIONS = {"torch": "2.13.0+cpu", "torch_git": "abc", "torch_cuda": None, "python_full": "3.11.7", "cuda": False}
ENV = {"PATH": "/usr/bin", "BYZAGG_DEBUG": "", "MAX_JOBS": "2"}


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "csrc" / "cpu").mkdir(parents=True)
    (tmp_path / "csrc" / "ops.cpp").write_text("int ops() { return 1; }\n")
    (tmp_path / "csrc" / "cpu" / "isa.cpp").write_text("int isa() { return 2; }\n")
    (tmp_path / "csrc" / "core.h").write_text("#pragma once\n")
    (tmp_path / "setup.py").write_text("# setup\n")
    return tmp_path


def key(tree, fields=FIELDS, tools=TOOLS, versions=VERSIONS, env=ENV):
    return nb.cache_key(tree, fields, tools, versions, env)[0]


def test_same_inputs_same_key(tree):
    assert key(tree) == key(tree)
    # a variable the build does not read does not matter
    assert key(tree, env=dict(ENV, PATH="/elsewhere", MAX_JOBS="1", HOME="/tmp")) == key(tree)


@pytest.mark.parametrize("path", ["csrc/ops.cpp", "csrc/cpu/isa.cpp", "csrc/core.h", "setup.py"])
def test_changed_source_changes_key(tree, path):
    before = key(tree)
    target = tree / path
    target.write_text(target.read_text() + "// one more line\n")
    assert key(tree) != before
    # one byte is enough
    target.write_bytes(target.read_bytes()[:-2] + b"!\n")
    assert key(tree) != before


def test_added_removed_or_renamed_file_changes_key(tree):
    before = key(tree)
    (tree / "csrc" / "cpu" / "new.cpp").write_text("")
    added = key(tree)
    assert added != before
    (tree / "csrc" / "cpu" / "new.cpp").rename(tree / "csrc" / "cpu" / "other.cpp")
    assert key(tree) not in (before, added)
    (tree / "csrc" / "cpu" / "other.cpp").unlink()
    assert key(tree) == before


@pytest.mark.parametrize(
    "name", ["BYZAGG_DEBUG", "BYZAGG_SANITIZE", "FORCE_CUDA", "TORCH_CUDA_ARCH_LIST", "CXX", "CXXFLAGS", "CPATH"]
)
def test_build_switches_change_key(tree, name):
    assert key(tree, env=dict(ENV, **{name: "1"})) != key(tree)


def test_flags_toolchain_and_versions_change_key(tree):
    base = key(tree)
    flags = json.loads(json.dumps(FIELDS))
    flags["extra_compile_args"]["cxx"].remove("-ffp-contract=off")
    assert key(tree, fields=flags) != base
    assert key(tree, fields=dict(FIELDS, include_dirs=["/other-venv/torch/include"])) != base
    assert key(tree, tools=dict(TOOLS, compiler_version="g++ 13.1.0")) != base
    for name, value in [("torch", "2.14.1"), ("torch_git", "def"), ("torch_cuda", "13.0"), ("python_full", "3.12.1")]:
        assert key(tree, versions=dict(VERSIONS, **{name: value})) != base, name


def test_real_tree_key_covers_csrc():
    """The key of this checkout reads every file under csrc/ (the new ISA file included)."""
    _, inputs = nb.cache_key(ROOT, FIELDS, TOOLS, VERSIONS, ENV)
    assert inputs["csrc"] == nb.hash_tree(ROOT / "csrc")
    assert (ROOT / "csrc" / "cpu" / "isa.cpp").is_file()


def test_store_then_fetch_round_trip(tmp_path):
    built = tmp_path / "built" / "_C.so"
    built.parent.mkdir()
    built.write_bytes(os.urandom(4096))
    cache = tmp_path / "cache"
    assert not nb.fetch(cache, "k1", tmp_path / "out" / "_C.so")  # empty cache: a miss
    nb.store(cache, "k1", built, {"what": "test"})
    assert sorted(p.name for p in cache.iterdir()) == ["k1.json", "k1.so"]  # no temporary left
    target = tmp_path / "out" / "_C.so"
    assert nb.fetch(cache, "k1", target)
    assert target.read_bytes() == built.read_bytes()
    assert not nb.fetch(cache, "k2", tmp_path / "out" / "other.so")


def test_incomplete_or_damaged_entry_is_a_miss(tmp_path):
    built = tmp_path / "_C.so"
    built.write_bytes(b"library bytes" * 100)
    cache = tmp_path / "cache"
    nb.store(cache, "k", built, {})
    # truncated library (what a copy interrupted half-way would leave without the rename)
    (cache / "k.so").write_bytes(b"library bytes")
    target = tmp_path / "out.so"
    assert not nb.fetch(cache, "k", target)
    assert not target.exists()
    assert not (cache / "k.so").exists()  # the damaged entry is gone
    # a library without its record (rename order: the record is written first)
    nb.store(cache, "k", built, {})
    (cache / "k.json").unlink()
    assert not nb.fetch(cache, "k", target)
    # a half-written temporary is never taken for an entry
    (cache / ".j.so.tmp-1").write_bytes(b"partial")
    assert not nb.fetch(cache, "j", target)


def test_prune_keeps_the_most_recent(tmp_path):
    built = tmp_path / "_C.so"
    built.write_bytes(b"x")
    cache = tmp_path / "cache"
    for i in range(nb.KEEP_ENTRIES + 2):
        nb.store(cache, f"k{i}", built, {})
        os.utime(cache / f"k{i}.so", (1000 + i, 1000 + i))
    nb.prune(cache)
    kept = sorted(p.stem for p in cache.glob("*.so"))
    assert kept == [f"k{i}" for i in range(2, nb.KEEP_ENTRIES + 2)]
    assert sorted(p.stem for p in cache.glob("*.json")) == kept


def test_cache_directory_switch(tmp_path):
    assert nb.cache_directory(tmp_path, {}) == tmp_path / "build" / "byzagg-cache"
    assert nb.cache_directory(tmp_path, {"BYZAGG_BUILD_CACHE": "0"}) is None
    assert nb.cache_directory(tmp_path, {"BYZAGG_BUILD_CACHE": "/c"}) == Path("/c")


def test_default_cache_is_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "-q", "build/byzagg-cache/x.so"], cwd=ROOT, capture_output=True
    )
    assert result.returncode == 0


def test_source_of_compiler_commands():
    command = "c++ -MMD -MF /b/ops.o.d -O3 -c /src/csrc/ops.cpp -o /b/ops.o -fopenmp"
    assert nb._source_of(command.split()) == "/src/csrc/ops.cpp"
    assert nb._source_of(["/bin/sh", "-c", command]) == "/src/csrc/ops.cpp"
    nvcc = "/usr/local/cuda/bin/nvcc --generate-dependencies-with-compile -c /src/k.cu -o /b/k.o"
    assert nb._source_of(["/bin/sh", "-c", nvcc]) == "/src/k.cu"
    assert nb._source_of(["c++", "-shared", "a.o", "-o", "_C.so"]) is None


@pytest.mark.skipif(shutil.which("ninja") is None or shutil.which("c++") is None, reason="needs ninja and c++")
def test_progress_lines_instead_of_command_lines(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    for name in "abc":
        (tmp_path / "src" / f"{name}.cpp").write_text(f"int {name}() {{ return 1; }}\n")
    rules = textwrap.dedent(
        """\
        rule compile
          command = c++ -MMD -MF $out.d -c $in -o $out
          depfile = $out.d
          deps = gcc
        """
    )
    edges = "".join(f"build {tmp_path}/{n}.o: compile {tmp_path}/src/{n}.cpp\n" for n in "abc")
    (tmp_path / "build.ninja").write_text(rules + edges)
    nb.NinjaProgress(tmp_path).run(str(tmp_path), "Error compiling objects for extension")
    out = capsys.readouterr().out
    assert "compiling 3 files" in out
    for name in "abc":
        assert re.search(rf"\d/3 done: src/{name}\.cpp", out), out
    assert "-MMD" not in out  # no compiler command lines
    assert "compiled 3/3 files" in out

    # the same warning in every file (as torch's headers give) is printed once
    (tmp_path / "src" / "h.h").write_text("#pragma once\n#warning same for all\n")
    for name in "abc":
        (tmp_path / "src" / f"{name}.cpp").write_text(f'#include "h.h"\nint {name}() {{ return 2; }}\n')
    nb.NinjaProgress(tmp_path).run(str(tmp_path), "Error compiling objects for extension")
    out = capsys.readouterr().out
    assert out.count("same for all [") == 1, out
    assert out.count("(the same 1 compiler warning(s) as above, not repeated)") == 2, out

    (tmp_path / "src" / "b.cpp").write_text("int b() { return ; }\n")
    with pytest.raises(RuntimeError, match="Error compiling objects for extension"):
        nb.NinjaProgress(tmp_path).run(str(tmp_path), "Error compiling objects for extension")
    out = capsys.readouterr().out
    assert "FAILED: src/b.cpp" in out
    assert "error" in out  # the compiler's diagnostics pass through


def test_build_requirements_do_not_include_torch():
    """BYZAGG_NO_NATIVE=1 pip install . must not need an isolated environment with torch."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10
        match = re.search(r"^requires\s*=\s*\[(.*?)\]", text, re.M | re.S)
        requires = re.findall(r'"([^"]+)"', match.group(1))
    else:
        requires = tomllib.loads(text)["build-system"]["requires"]
    names = [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() for r in requires]
    assert "setuptools" in names
    assert "torch" not in names


# setup.py run in a Python where `import torch` fails, as in an isolated build environment.
NO_TORCH = textwrap.dedent(
    """\
    import runpy, sys
    sys.modules["torch"] = None  # import torch -> ImportError
    sys.argv = ["setup.py", "--name"]
    runpy.run_path("setup.py", run_name="__main__")
    """
)


def run_setup_without_torch(**env):
    environment = {k: v for k, v in os.environ.items() if k != "BYZAGG_NO_NATIVE"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_no_native_setup_needs_no_torch():
    result = run_setup_without_torch(BYZAGG_NO_NATIVE="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "byzagg"


def test_setup_without_torch_says_what_to_do():
    result = run_setup_without_torch()
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "torch must be installed first" in message
    assert "--no-build-isolation" in message
