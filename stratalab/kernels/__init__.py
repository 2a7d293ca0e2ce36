"""Code executed on Dask workers; imports nothing from stratalab.jupyter_ext or
stratalab.scheduler so it loads on a bare worker."""
