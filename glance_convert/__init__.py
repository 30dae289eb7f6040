"""glance-convert: an image conversion plugin for Glance's image import."""
