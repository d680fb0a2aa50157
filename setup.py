"""Build byzagg and its native extension byzagg._C.

Switches (environment):
  BYZAGG_NO_NATIVE=1   pure-Python install: everything runs on the reference.
  FORCE_CUDA=1         insist on compiling csrc/cuda (an error if torch has no CUDA).
  TORCH_CUDA_ARCH_LIST also asks for CUDA when torch is a CUDA build and nvcc is found.
  BYZAGG_DEBUG=1       -O0 -g.
  BYZAGG_SANITIZE=1    AddressSanitizer + UBSan build of the CPU code (-O1 -g); build it into
                       its own directory and run it with libasan preloaded: tools/fuzz_asan.sh.
  BYZAGG_BUILD_CACHE=0 do not reuse (or keep) compiled extensions; =DIR keeps them in DIR.
  BYZAGG_BUILD_VERBOSE=1  ninja's full compiler command lines instead of progress lines.
The CPU kernels are always built; CUDA when torch is a CUDA build, nvcc is found, and a GPU
is present or FORCE_CUDA / TORCH_CUDA_ARCH_LIST is set. Build with
`pip install --no-build-isolation .` so that the extension is compiled against the torch
that is installed (build isolation would fetch another torch: an ABI mismatch at import).

Progress and reuse (tools/native_build.py): `python setup.py -q build_ext` prints a line per
file compiled (pip hides a build's output unless -v); every compiled extension is kept in
build/byzagg-cache/ under a key that hashes all its inputs (csrc/, this file, flags,
compiler, torch, Python, the switches above), so that a later `pip install .` or
`pip install -e .` of the same tree with the same inputs copies it instead of compiling.
"""

import glob
import importlib.util
import json
import os
import platform
import sys
import sysconfig
import time
import warnings
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def load_native_build():
    """tools/native_build.py, loaded by path (no package named `tools` is imported)."""
    spec = importlib.util.spec_from_file_location("byzagg_native_build", ROOT / "tools" / "native_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def cxx_standard(torch) -> str:
    """C++17, or C++20 where torch's headers demand it (torch 2.14 does)."""
    header = Path(torch.utils.cpp_extension.include_paths()[0]) / "ATen" / "ATen.h"
    try:
        return "c++20" if "C++20 or later" in header.read_text() else "c++17"
    except OSError:
        return "c++17"


def native_extensions():
    if flag("BYZAGG_NO_NATIVE"):
        print("byzagg build: BYZAGG_NO_NATIVE set, no native extension")
        return [], {}
    # torch warns when numpy is missing; the build does not use numpy
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        sys.exit(
            "byzagg build: torch must be installed first, and the build run without isolation:\n"
            "  pip install torch==2.13.0 && pip install --no-build-isolation ."
        )

    torch_has_cuda = torch.version.cuda is not None
    wants_cuda = flag("FORCE_CUDA") or bool(os.environ.get("TORCH_CUDA_ARCH_LIST")) or torch.cuda.is_available()
    if flag("FORCE_CUDA") and not torch_has_cuda:
        sys.exit(f"byzagg build: FORCE_CUDA=1 but torch {torch.__version__} is a CPU-only build")
    if flag("FORCE_CUDA") and CUDA_HOME is None:
        sys.exit("byzagg build: FORCE_CUDA=1 but nvcc was not found (set CUDA_HOME)")
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    use_cuda = torch_has_cuda and CUDA_HOME is not None and wants_cuda and bool(cuda_sources)

    sources = ["csrc/python_module.cpp", "csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    debug = flag("BYZAGG_DEBUG")
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    standard = cxx_standard(torch)
    # No FMA contraction: a fused multiply-add only where the code asks for one, so that every
    # vector ISA (and every compiler target) gives the same bits.
    cxx += [f"-std={standard}", "-fvisibility=hidden", "-ffp-contract=off"]
    link = []
    if flag("BYZAGG_SANITIZE"):
        sanitize = ["-fsanitize=address,undefined", "-fno-sanitize=vptr", "-fno-omit-frame-pointer"]
        cxx = ["-O1", "-g", f"-std={standard}", "-fvisibility=hidden", "-ffp-contract=off"] + sanitize
        link += sanitize
    if torch.backends.openmp.is_available():
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    extra_compile_args = {"cxx": cxx}
    if use_cuda:
        sources += cuda_sources
        extra_compile_args["nvcc"] = ["-O0" if debug else "-O3", f"-std={standard}", "--expt-relaxed-constexpr", "-lineinfo"]
        Extension = CUDAExtension
    else:
        Extension = CppExtension

    info = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda": use_cuda,
        "python": platform.python_version(),
        "openmp": torch.backends.openmp.is_available(),
        "debug": debug,
    }
    (ROOT / "byzagg" / "_build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        "byzagg build: torch {torch} (CUDA {torch_cuda}), CUDA kernels: {cuda}, OpenMP: {openmp}, "
        "debug: {debug}, Python {python}".format(**info)
    )
    extension = Extension(
        name="byzagg._C",
        sources=sources,
        include_dirs=[str(ROOT / "csrc")],
        extra_compile_args=extra_compile_args,
        extra_link_args=link,
    )
    versions = dict(
        info,
        torch_git=torch.version.git_version,
        torch_hip=getattr(torch.version, "hip", None),
        cxx11_abi=getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None),
        python_full=sys.version,
        cache_tag=sys.implementation.cache_tag,
        ext_suffix=sysconfig.get_config_var("EXT_SUFFIX"),
        machine=platform.machine(),
        # the compiler and flags setuptools takes from the Python build
        python_build={name: sysconfig.get_config_var(name) for name in ("CC", "CXX", "CFLAGS", "CCSHARED", "LDSHARED")},
    )
    if use_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        # torch then compiles for the GPUs it sees
        versions["gpus"] = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    nvcc = str(Path(CUDA_HOME) / "bin" / "nvcc") if use_cuda else None

    class BuildExt(BuildExtension):
        """torch's BuildExtension, with progress lines and the build cache (tools/native_build.py)."""

        def build_extension(self, ext):
            import torch.utils.cpp_extension as cpp_extension

            nb = load_native_build()
            target = Path(self.get_ext_fullpath(ext.name))
            directory = nb.cache_directory(ROOT)
            key = inputs = None
            if directory is not None:
                tools = nb.toolchain(cpp_extension.get_cxx_compiler(), nvcc)
                key, inputs = nb.cache_key(ROOT, nb.extension_fields(ext), tools, versions, os.environ)
                if nb.fetch(directory, key, target):
                    nb.say(f"{ext.name}: reusing the build in {directory} (key {key[:12]}: same sources, flags, "
                           "compiler, torch and Python); BYZAGG_BUILD_CACHE=0 compiles anyway")
                    return
            start = time.monotonic()
            nb.say(f"{ext.name}: compiling (no earlier build with the same inputs)")
            with nb.ninja_progress(cpp_extension, ROOT):
                super().build_extension(ext)
            minutes, seconds = divmod(int(time.monotonic() - start), 60)
            nb.say(f"{ext.name}: built in {minutes}:{seconds:02d}")
            if key is not None:
                try:
                    nb.store(directory, key, target, inputs)
                except OSError as error:  # a read-only tree: the build itself is fine
                    nb.say(f"could not keep the build in {directory}: {error}")

    return [extension], {"build_ext": BuildExt.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = native_extensions()

setup(
    name="byzagg",
    version="0.1.0",
    description="Byzantine-robust aggregation rules for PyTorch, native on CPU and CUDA",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["byzagg", "byzagg.*"]),
    package_data={"byzagg": ["_build_info.json"], "byzagg.train": ["data/*"]},
    install_requires=["torch>=2.4", "numpy"],  # torch.library.register_fake and register_autograd
    extras_require={
        "test": ["pytest", "hypothesis", "tqdm", "matplotlib"],  # the harness tests make figures
        "bench": ["pytest-benchmark", "matplotlib", "scipy"],  # + pip install --no-deps byzfl (benchmarks/peers.py)
        "train": ["tqdm", "matplotlib"],
        # the offline tabular task of the Krum paper's grids (scikit-learn's bundled breast-cancer
        # set); without it those tests skip and --dataset spambase --data-dir reads UCI Spambase
        "train-tabular": ["tqdm", "matplotlib", "scikit-learn"],
        # byzagg.flower (a Flower strategy); the version byzagg/flower.py is tested with.
        "flower": ["flwr[simulation]==1.42.0"],
    },
    entry_points={
        "console_scripts": [
            "byzagg-demo = byzagg.demo:main",
            "byzagg-repro = byzagg.train.cli:main",
        ]
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
