"""Video outputs: frames encoded to MP4 / WebM / animated WebP / GIF with a poster image (``encode``)."""
