"""Example clusters (YAML, planner/profile/cluster.py): `plan targets` lists them, `--target NAME` plans on one."""
