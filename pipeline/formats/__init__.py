"""What the job reads and writes, with no Beam graph: storage, shards, records, kept columns, output files, manifest."""
