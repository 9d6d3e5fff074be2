"""``segue serve``: a local web app to protect photos in the browser (optional extra ``segue[serve]``).

Everything runs on the user's machine, bound to 127.0.0.1 by default: uploading faces to
someone else's server would defeat the purpose.
"""

from segue.serve.app import create_app

__all__ = ["create_app"]
