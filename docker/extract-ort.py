#!/usr/bin/env python3
"""Copies ONNX Runtime's shared libraries out of a PyPI wheel (used by the Dockerfiles).

    extract-ort.py WHEEL DEST_DIR VERSION [EXTRA_LIB ...]

Writes DEST_DIR/libonnxruntime.so.VERSION (+ a libonnxruntime.so link) and every
EXTRA_LIB (e.g. libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so for
onnxruntime-gpu), then loads the main library and checks that it reports VERSION.
"""
import ctypes
import os
import shutil
import sys
import zipfile


def main() -> None:
    whl, dest, version, *extra = sys.argv[1:]
    os.makedirs(dest, exist_ok=True)
    main_lib = f"libonnxruntime.so.{version}"
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        for want in (main_lib, *extra):
            hits = [n for n in names if n.endswith("/capi/" + want)]
            if not hits:
                sys.exit(f"{want} not in {whl}; it has: " + " ".join(n for n in names if ".so" in n))
            with z.open(hits[0]) as src, open(os.path.join(dest, want), "wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(os.path.join(dest, want), 0o755)
    link = os.path.join(dest, "libonnxruntime.so")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(main_lib, link)

    class ApiBase(ctypes.Structure):
        _fields_ = [("GetApi", ctypes.c_void_p), ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p))]

    lib = ctypes.CDLL(link)
    lib.OrtGetApiBase.restype = ctypes.POINTER(ApiBase)
    got = lib.OrtGetApiBase().contents.GetVersionString().decode()
    if got != version:
        sys.exit(f"{link} reports ONNX Runtime {got}, expected {version}")
    print(f"ONNX Runtime {got} in {dest}: " + ", ".join(sorted(os.listdir(dest))))


if __name__ == "__main__":
    main()
