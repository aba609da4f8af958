"""The C extension (setuptools needs it declared in code)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("conn_speedups._native", ["src/conn_speedups/_native.c"],
                             depends=["src/conn_speedups/sha256.h"],
                             extra_compile_args=["-O3", "-std=c11"])])
