"""langfield.viewer: the viser web viewer (source in the repository's top-level ``viewer/``).

``core`` renders a scene for a camera in one of the modes rgb | depth |
features | relevancy and imports no viser; ``server`` drives viser (an
optional dependency: ``pip install -e ".[viewer]"``); ``command`` is the
``langfield view`` subcommand.
"""

from langfield.viewer.camera import ViewerCamera
from langfield.viewer.command import ViewCommand
from langfield.viewer.config import ViewerConfig
from langfield.viewer.core import LANGUAGE_MODES, MODES, RenderCore, RenderRequest, RenderResult

__all__ = ["LANGUAGE_MODES", "MODES", "RenderCore", "RenderRequest", "RenderResult", "ViewCommand", "ViewerCamera",
           "ViewerConfig"]
