"""The load side: the engines, each kind's runner (looked up through `lab.kinds`), the
meters of a measured window and the figures computed from its samples."""
