"""What to measure: the config's model and parser, endpoints, and where client and servers run."""
