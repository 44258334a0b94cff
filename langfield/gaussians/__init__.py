"""langfield.gaussians: the Gaussian set and everything that creates, stores or reshapes it.

Modules (import them directly; this package imports nothing eagerly):

* ``params``   the parameter contract (pre-activation ParameterDict) and ``activate``
* ``init``     ``init_from_points``, ``init_from_depth``, ``init_random``
* ``knn``      exact k-nearest-neighbour distances (initial sizes)
* ``ply``      ``save_ply`` / ``load_ply``: standard 3DGS PLY plus ``lang_*`` columns
* ``ops``      ``duplicate`` / ``split`` / ``remove`` / ``reset_opacity`` with optimizer state
* ``strategy`` ``DefaultStrategy``: 3DGS clone/split/prune/opacity-reset schedule
"""
