"""Remote hosts: servers on one host, load from others, on Dask distributed."""
