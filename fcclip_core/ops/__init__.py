"""Multi-scale deformable attention: one entry point over native and reference kernels."""
