"""The ICAP (RFC 3507) network filter behind `vakta icap`: known material and listed URLs blocked at the web proxy."""
