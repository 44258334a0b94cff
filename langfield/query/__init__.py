"""langfield.query: text -> relevancy (LERF), level choice, masks/heatmaps, 3D selection.

Independent of the CLIP models and the codec: encoders are callables
``list[str] -> [Q, E]`` and decoded features are plain tensors.
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
from langfield.query.query2d import Query2DResult, level_relevancy, query_views
from langfield.query.relevancy import (
    DEFAULT_NEGATIVES,
    QueryConfig,
    TextEmbeddingCache,
    TextEncoder,
    relevancy,
    text_relevancy,
)
from langfield.query.select3d import (
    GaussianRelevancy,
    Query3DResult,
    SelectionConfig,
    export_selection,
    subset_params,
)

__all__ = [
    "DEFAULT_NEGATIVES",
    "GaussianRelevancy",
    "Query2DResult",
    "Query3DResult",
    "QueryConfig",
    "SelectionConfig",
    "TextEmbeddingCache",
    "TextEncoder",
    "absolute_mask",
    "box_filter",
    "choose_level",
    "export_selection",
    "gather_levels",
    "heatmap_overlay",
    "level_relevancy",
    "level_scores",
    "normalize_relevancy",
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
