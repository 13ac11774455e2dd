"""Thin nn.Modules and frozen attrs specs that assemble `metaslot.ops` into models."""
