"""Operating a running deployment: fleet status, recovery of jobs the broker or a worker lost,
and the dead-letter lists. Used by `textlstm-admin status`, `jobs` and `dead-letters`."""
