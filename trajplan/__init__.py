"""trajplan: CT-guided needle trajectory planning for sacroplasty."""

__version__ = "0.1.0"
