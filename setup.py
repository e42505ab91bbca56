"""Build hook: generate the gRPC/protobuf modules from protos/ at build time (never committed)."""

import shutil
import tempfile
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
PROTO_ROOT = ROOT / "protos"
# The package `gradserve` lives in client/, so gradserve.v1 is generated into client/v1/.
DEST = ROOT / "client" / "v1"


def generate_protos() -> None:
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "gradserve" / "v1").glob("*.proto"))
    with tempfile.TemporaryDirectory() as out:
        for proto in protos:
            args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
                    f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", proto]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {proto}")
        DEST.mkdir(exist_ok=True)
        for generated in (Path(out) / "gradserve" / "v1").iterdir():
            shutil.copy(generated, DEST / generated.name)
    (DEST / "__init__.py").write_text('"""Generated protobuf and gRPC modules for gradserve.v1."""\n')


# The importable package is `gradserve`; its pieces live in the fixed top-level folders.
PACKAGE_DIRS = {"gradserve": "client", "gradserve.engine": "engine", "gradserve.server": "server"}


def find_packages() -> list[str]:
    """Every folder with an __init__.py below the mapped folders, as a dotted package name."""
    packages = []
    for package, folder in PACKAGE_DIRS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT / folder).parts
            packages.append(".".join((package, *parts)))
    return packages


# Generated before setup() runs: setuptools checks that every package folder exists while it
# prepares metadata, before any build command.
generate_protos()
setup(package_dir=PACKAGE_DIRS, packages=find_packages())
