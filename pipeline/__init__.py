"""The Apache Beam embedding job: read shards, embed with an `encoders.Encoder`, write Parquet."""
