"""Load: the engines, the experiment kinds' runners (`lab.load.kinds`), the monitor."""
