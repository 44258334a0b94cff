"""langfield.query: text -> relevancy (LERF), level choice, masks/heatmaps, 3D selection.

``LanguageField`` (``field.py``) is the one read-side API of a scene's language
field: load once, then render / embed / relevancy / select. The building blocks
below it are independent of the CLIP models and the codec: encoders are
callables ``list[str] -> [Q, E]`` and decoded features are plain tensors.
"""

from langfield.query.levels import box_filter, choose_level, gather_levels, level_scores, smooth_relevancy
from langfield.query.masks import (
    absolute_mask,
    heatmap_overlay,
    normalize_relevancy,
    relevancy_mask,
    save_heatmap_png,
    save_mask_png,
    turbo_colormap,
)
from langfield.query.field import CHANNELS, RELEVANCY_METHODS, FieldRelevancy, FieldRender, LanguageField, SceneField
from langfield.query.query2d import (
    Query2DResult, composited_relevancy, level_relevancy, pick_levels, query_views, splat_channels,
)
from langfield.query.relevancy import (
    DEFAULT_NEGATIVES,
    QueryConfig,
    TextEmbeddingCache,
    TextEncoder,
    relevancy,
    text_relevancy,
)
from langfield.query.rules import auto_majority_window, auto_smoothing_kernel, check_texts, query_config
from langfield.query.select3d import (
    GaussianRelevancy,
    Query3DResult,
    SelectionConfig,
    export_selection,
    subset_params,
)

__all__ = [
    "CHANNELS",
    "RELEVANCY_METHODS",
    "composited_relevancy",
    "splat_channels",
    "DEFAULT_NEGATIVES",
    "FieldRelevancy",
    "FieldRender",
    "GaussianRelevancy",
    "LanguageField",
    "Query2DResult",
    "Query3DResult",
    "QueryConfig",
    "SceneField",
    "SelectionConfig",
    "TextEmbeddingCache",
    "TextEncoder",
    "absolute_mask",
    "auto_majority_window",
    "auto_smoothing_kernel",
    "box_filter",
    "check_texts",
    "choose_level",
    "export_selection",
    "gather_levels",
    "heatmap_overlay",
    "level_relevancy",
    "level_scores",
    "normalize_relevancy",
    "pick_levels",
    "query_config",
    "query_views",
    "relevancy",
    "relevancy_mask",
    "save_heatmap_png",
    "save_mask_png",
    "smooth_relevancy",
    "subset_params",
    "text_relevancy",
    "turbo_colormap",
]
