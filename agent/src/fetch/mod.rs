//! Fetching apps, datasets and input files (http(s), file, IPFS gateways) into a content-addressed cache.
