"""What happens to records that fail: in-line retries, the retry topic, dead letters, late records."""
