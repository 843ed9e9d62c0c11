"""Neighbour lists of periodic crystals, ported from upstream ALIGNN without DGL.

``pure_top_k_edges`` repeats the tensor operations of ``alignn.torch_graph_builder.torch_neighbor_list``
(float32, same candidate order, same sorts), so ties at the ``max_neighbors``-th neighbour are broken
exactly as upstream does. ``k_nearest_edges`` repeats classic ``alignn.graphs.nearest_neighbor_edges``
(jarvis ``Atoms.get_all_neighbors`` in float64) and ``build_undirected_edgedata``, vectorised.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.spatial import cKDTree

from perovdb.switches import torch_threads


@dataclass(frozen=True)
class EdgeList:
    """Directed edges ``src → dst`` at integer lattice image ``images`` with Cartesian ``vectors`` (Å)."""

    src: np.ndarray  # (E,) int64
    dst: np.ndarray  # (E,) int64
    images: np.ndarray  # (E, 3) int32
    vectors: np.ndarray  # (E, 3) float32, r = x[dst] + images @ lattice - x[src]


# ---------------------------------------------------------------------------------------------
# pure-top-k (ALIGNN 2.0)
# ---------------------------------------------------------------------------------------------

#: float32 elements per block of the candidate search (memory bound, like upstream's chunking)
SEARCH_BLOCK = 1 << 20


def _shift_counts_torch(lattice: torch.Tensor, cutoff: float) -> list[int]:
    """Upstream ``_torch_periodic_shifts``'s range ``-n..n`` per lattice vector, as it computes it (float32)."""
    recip = 2 * math.pi * torch.linalg.inv(lattice).T
    recip_len = torch.linalg.norm(recip, dim=1)
    return [int(n) for n in torch.ceil(cutoff * recip_len / (2 * math.pi)).to(torch.long)]


def _shift_counts(lattice32: np.ndarray, cutoff: float) -> list[int]:
    """Upstream's ``n_max`` per lattice vector, ``ceil(cutoff |b_i| / 2π)`` in float32 torch.

    Computed in float64 numpy; upstream's float32 torch route decides only when the value is so close to an
    integer that float32 rounding could change its ceiling.
    """
    lattice64 = lattice32.astype(np.float64)
    inverse = np.linalg.inv(lattice64)
    values = cutoff * np.sqrt(np.sum(inverse * inverse, axis=0))  # |b_i| / 2π = column norms of the inverse
    condition = float(np.linalg.norm(lattice64) * np.linalg.norm(inverse))  # >= the 2-norm condition number
    tolerance = max(1e-3, 1e-5 * condition) * np.maximum(1.0, values)
    if np.all(np.abs(values - np.round(values)) > tolerance):
        return [int(n) for n in np.ceil(values)]
    return _shift_counts_torch(torch.from_numpy(lattice32), cutoff)


@lru_cache(maxsize=256)
def _shift_grid(counts: tuple[int, int, int]) -> np.ndarray:
    """``torch.cartesian_prod`` of ``range(-n, n + 1)`` per axis (first axis slowest), float32 [K, 3].

    Cached and shared between calls: callers only index it, never write to it.
    """
    axes = [np.arange(-n, n + 1, dtype=np.float32) for n in counts]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _candidates(
    positions: np.ndarray, offsets: np.ndarray, cutoff: float, self_tol: float, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shift k, source i, neighbour j) of upstream's mask ``0 < |x_j + off_k - x_i|² <= cutoff²``, in its order.

    Upstream computes all ``K × n × n`` float32 distances, source chunk by chunk. Here a (shift, source) pair
    is skipped when (float64, wide margin) the source is beyond the cutoff of the shifted atoms' bounding box;
    the rest get upstream's exact float32 values, ``((x_j + off_k) - x_i)²`` summed x, y, z in order.
    """
    n = len(positions)
    c2, tol = np.float32(float(cutoff) * float(cutoff)), np.float32(self_tol)
    pos64, off64 = positions.astype(np.float64), offsets.astype(np.float64)
    reach = cutoff + 1e-4 * (cutoff + float(np.abs(pos64).max()) + float(np.abs(off64).max()))
    low, high = pos64.min(axis=0), pos64.max(axis=0)
    columns = [np.ascontiguousarray(positions[:, axis]) for axis in range(3)]
    parts = []
    for i0 in range(0, n, chunk):
        i1 = min(i0 + chunk, n)
        relative = pos64[None, i0:i1, :] - off64[:, None, :]  # source seen from the shifted cell, [K, chunk, 3]
        gap = np.maximum(np.maximum(low - relative, relative - high), 0.0)
        k_sel, i_sel = np.nonzero(np.sum(gap * gap, axis=-1) <= reach * reach)
        i_sel += i0
        for b0 in range(0, len(k_sel), max(1, SEARCH_BLOCK // n)):
            kb, ib = k_sel[b0 : b0 + max(1, SEARCH_BLOCK // n)], i_sel[b0 : b0 + max(1, SEARCH_BLOCK // n)]
            d2 = np.zeros((len(kb), n), dtype=np.float32)
            for axis, p in enumerate(columns):
                a = (p[None, :] + offsets[kb, axis, None]) - p[ib, None]
                d2 += a * a
            row, j = np.nonzero((d2 <= c2) & (d2 > tol))
            parts.append((kb[row], ib[row], j))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))  # type: ignore[return-value]


def _stable_argsort_ids(ids: np.ndarray, num_ids: int) -> np.ndarray:
    """``np.argsort(ids, kind="stable")`` of ids in ``[0, num_ids)``; uint16 keys get numpy's radix sort."""
    if num_ids <= np.iinfo(np.uint16).max + 1:
        ids = ids.astype(np.uint16)
    return np.argsort(ids, kind="stable")


def _topk_per_source(src: np.ndarray, keys: torch.Tensor, k: int, num_nodes: int) -> np.ndarray:
    """Indices of the ``k`` smallest ``keys`` per source, in upstream's order and with its tie-breaking.

    ``torch.argsort`` (unstable) must see upstream's complete key array: its order of equal keys depends on it.
    """
    order_key = torch.argsort(keys).numpy()
    perm = order_key[_stable_argsort_ids(src[order_key], num_nodes)]
    src_sorted = src[perm]
    starts = np.searchsorted(src_sorted, np.arange(num_nodes))
    within = np.arange(perm.size) - starts[src_sorted]
    return perm[within < k]


def pure_top_k_edges(
    cart_coords: np.ndarray,
    lattice_mat: np.ndarray,
    cutoff: float,
    max_neighbors: int | None,
    chunk_size: int = 512,
    self_tol: float = 1e-8,
) -> EdgeList:
    """All neighbours within ``cutoff``, then the ``max_neighbors`` closest per source atom (float32).

    Bit-identical to upstream ``torch_neighbor_list``: same shifts,
    same float32 arithmetic, same candidate order, and upstream's own ``torch.argsort`` and norm on the
    complete candidate list; only the search for candidates is cheaper (it skips far shift/source pairs).
    """
    positions = np.asarray(cart_coords, dtype=np.float64).astype(np.float32)
    lattice = np.asarray(lattice_mat, dtype=np.float64).astype(np.float32)
    num_nodes = len(positions)
    shifts = _shift_grid(tuple(_shift_counts(lattice, cutoff)))
    with torch.no_grad(), torch_threads(1):
        offsets = (torch.from_numpy(shifts) @ torch.from_numpy(lattice)).numpy()  # rows as upstream's shift @ lattice
        chunk = max(1, min(chunk_size, max(1, 2**30 // max(len(shifts) * num_nodes, 1))))
        k, i, j = _candidates(positions, offsets, float(cutoff), self_tol, chunk)
        r = np.empty((len(i), 3), dtype=np.float32)
        for axis in range(3):  # upstream's positions[dst] - positions[src] + shift @ lattice, per column
            p = positions[:, axis]
            r[:, axis] = (p[j] - p[i]) + offsets[k, axis]
        if max_neighbors is not None and max_neighbors > 0 and i.size > 0:
            keep = _topk_per_source(i, torch.from_numpy(r).norm(dim=1), int(max_neighbors), num_nodes)
            k, i, j, r = k[keep], i[keep], j[keep], r[keep]
    return EdgeList(
        src=i.astype(np.int64),
        dst=j.astype(np.int64),
        images=shifts[k].astype(np.int32),
        vectors=r.astype(np.float32),
    )


# ---------------------------------------------------------------------------------------------
# k-nearest (classic ALIGNN)
# ---------------------------------------------------------------------------------------------

BOND_TOL = 0.15  # jarvis get_all_neighbors default: closer "neighbours" are ignored
JARVIS_LATTICE_DECIMALS = 5  # jarvis ``Lattice`` rounds its matrix; cart_coords and reciprocal use the rounded one


def jarvis_cart_coords(frac_coords: np.ndarray, lattice_mat: np.ndarray) -> np.ndarray:
    """Cartesian coordinates exactly as jarvis ``Atoms.cart_coords`` (rounded lattice), so float ties match."""
    rounded = np.around(np.asarray(lattice_mat, dtype="float64").reshape(3, 3), decimals=JARVIS_LATTICE_DECIMALS)
    return np.dot(np.asarray(frac_coords, dtype=float), rounded)


def _lattice_lengths(matrix: np.ndarray) -> list[float]:
    """jarvis ``Lattice.abc``: row norms rounded to 6 decimals."""
    return [round(x, 6) for x in np.sqrt(np.sum(matrix**2, axis=1)).tolist()]


def _jarvis_images(frac_coords: np.ndarray, matrix: np.ndarray, r: float) -> list[np.ndarray]:
    """Per lattice vector, the image range jarvis ``get_all_neighbors(r)`` loops over (float64)."""
    rounded = np.around(matrix, decimals=JARVIS_LATTICE_DECIMALS)
    recp = np.around(2 * np.pi * np.linalg.inv(rounded).T, decimals=JARVIS_LATTICE_DECIMALS)
    recp_len = np.array(_lattice_lengths(recp))
    maxr = np.ceil((r + BOND_TOL) * recp_len / (2 * math.pi))
    nmin = np.floor(np.min(frac_coords, axis=0)) - maxr
    nmax = np.ceil(np.max(frac_coords, axis=0)) + maxr
    return [np.arange(x, y) for x, y in zip(nmin, nmax)]


def _neighbor_distances(
    cart_coords: np.ndarray, offsets: np.ndarray, centre: np.ndarray, neighbour: np.ndarray
) -> np.ndarray:
    """jarvis's float64 distance |(offset + x_neighbour) - x_centre|, rounding as its dense loop does."""
    return np.sum(((offsets + cart_coords[neighbour]) - cart_coords[centre]) ** 2, axis=-1) ** 0.5


def _all_neighbors(
    frac_coords: np.ndarray, cart_coords: np.ndarray, matrix: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """jarvis ``Atoms.get_all_neighbors(r)`` as flat arrays (centre, neighbour, distance, image) in its order."""
    centres, neighbours, distances, images = [], [], [], []
    for image in itertools.product(*_jarvis_images(frac_coords, matrix, r)):
        coords = np.dot(image, matrix) + cart_coords
        dists = np.sum((coords[:, None, :] - cart_coords[None, :, :]) ** 2, axis=-1) ** 0.5  # [j, i]
        within = (dists <= r) & (dists > 1e-8) & (dists > BOND_TOL)
        j, i = np.nonzero(within)  # j-major, as jarvis loops
        if j.size:
            centres.append(i)
            neighbours.append(j)
            distances.append(dists[j, i])
            images.append(np.broadcast_to(np.asarray(image, dtype=np.int64), (j.size, 3)))
    if not centres:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0), np.empty((0, 3), dtype=np.int64)
    return np.concatenate(centres), np.concatenate(neighbours), np.concatenate(distances), np.concatenate(images)


class _FewerThanK(Exception):
    """Some atom surely has fewer than k neighbours within the radius (jarvis then grows the radius)."""


def _nearest_neighbors(
    frac_coords: np.ndarray, cart_coords: np.ndarray, matrix: np.ndarray, r: float, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The part of ``_all_neighbors(r)`` that the k-nearest selection keeps, found with a k-d tree.

    Returns (centre, neighbour, image) of every neighbour (``BOND_TOL < d <= r``) no farther than the
    centre's ``k``-th, decided on jarvis's exact float64 distances (tree distances only pick candidates,
    with a wide margin); raises ``_FewerThanK`` when an atom surely has fewer than ``k`` neighbours
    within ``r``; returns None when the margins leave that undecided (use ``_all_neighbors``).
    """
    n = len(cart_coords)
    images = np.stack(np.meshgrid(*_jarvis_images(frac_coords, matrix, r), indexing="ij"), axis=-1).reshape(-1, 3)
    approx = images @ matrix
    margin = 1e-6 * (1.0 + r + float(np.abs(approx).max()) + float(np.abs(cart_coords).max()))
    extent = cart_coords.max(axis=0) - cart_coords.min(axis=0)
    reachable = np.flatnonzero(np.linalg.norm(np.maximum(np.abs(approx) - extent, 0.0), axis=1) <= r + margin)
    points = (cart_coords[None, :, :] + approx[reachable, None, :]).reshape(-1, 3)
    if len(points) == 0:
        return None
    tree = cKDTree(points, balanced_tree=False, compact_nodes=False)  # faster to build, same answers
    rows = np.arange(n)
    q = min(len(points), 2 * k + 8)
    while True:
        dist, idx = tree.query(cart_coords, k=q, distance_upper_bound=r + margin)
        dist = dist.reshape(n, q)
        idx = idx.reshape(n, q)
        first = np.count_nonzero(dist <= BOND_TOL + margin, axis=1)  # sorted: self and too-close come first
        if np.any(first + k > q) and q < len(points):
            q = min(len(points), 2 * q)
            continue
        kth = np.where(first + k <= q, dist[rows, np.minimum(first + k - 1, q - 1)], np.inf)
        if not np.all(np.isfinite(kth)):  # fewer than k beyond BOND_TOL within r (+ margin)
            short = ~np.isfinite(kth)
            listed_all = (q == len(points)) | np.isinf(dist[short, -1])
            possible = np.count_nonzero(np.isfinite(dist[short]) & (dist[short] > BOND_TOL - margin), axis=1)
            if np.any(listed_all & (possible < k)):
                raise _FewerThanK
            return None
        bound = kth + 2 * margin  # every neighbour up to the exact k-th distance is within this
        if q == len(points) or np.all(dist[:, -1] > bound):
            break
        q = min(len(points), 2 * q)
    centre, column = np.nonzero(dist <= bound[:, None])
    point = idx[centre, column]
    image_id = reachable[point // n]
    neighbour = point % n
    used, inverse = np.unique(image_id, return_inverse=True)
    offsets = np.array([np.dot(images[u], matrix) for u in used])  # exactly jarvis's per-image offsets
    distance = _neighbor_distances(cart_coords, offsets[inverse], centre, neighbour)
    within = (distance <= r) & (distance > 1e-8) & (distance > BOND_TOL)
    centre, neighbour, distance, image_id = centre[within], neighbour[within], distance[within], image_id[within]
    if np.bincount(centre, minlength=n).min() < k:
        return None
    centre, neighbour, image_id, kth = _keep_k_nearest(centre, neighbour, distance, image_id, n, k)
    if np.any(kth > bound - margin):  # a neighbour as close as the k-th might not have been a candidate
        return None
    return centre, neighbour, images[image_id].astype(np.int64)


def _keep_k_nearest(
    centre: np.ndarray, neighbour: np.ndarray, distance: np.ndarray, image: np.ndarray, n: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per centre, the neighbours no farther than its ``k``-th nearest (ties included), and that distance."""
    order = np.lexsort((distance, centre))
    centre, neighbour, distance, image = centre[order], neighbour[order], distance[order], image[order]
    kth = distance[np.searchsorted(centre, np.arange(n)) + k - 1]
    keep = distance <= kth[centre]
    return centre[keep], neighbour[keep], image[keep], kth


def _unique_rows(rows: np.ndarray) -> np.ndarray:
    """``np.unique(rows, axis=0)`` (rows sorted lexicographically) of int64 rows, via one packed int64 key per row."""
    if len(rows) == 0:
        return rows
    low = rows.min(axis=0)
    span = rows.max(axis=0) - low + 1
    if float(np.prod(span.astype(np.float64))) >= 2.0**62:
        return np.unique(rows, axis=0)
    weights = np.cumprod(np.concatenate([[1], span[:0:-1]]))[::-1]  # row-major mixed radix
    keys = np.unique((rows - low) @ weights)
    out = np.empty((len(keys), rows.shape[1]), dtype=rows.dtype)
    for column in range(rows.shape[1] - 1, -1, -1):
        keys, out[:, column] = np.divmod(keys, span[column])
    out += low
    return out


def k_nearest_edges(
    frac_coords: np.ndarray,
    lattice_mat: np.ndarray,
    cutoff: float,
    max_neighbors: int,
    use_canonize: bool = True,
) -> EdgeList:
    """Classic ALIGNN k-nearest graph: all neighbours up to the k-th neighbour distance, both directions.

    The search radius grows as upstream's does (to the longest lattice vector, then doubling) until
    every atom has ``max_neighbors`` neighbours. Unlike upstream, a reversed edge carries the negated
    image, so ``vectors == x[dst] + images @ lattice - x[src]`` holds for every edge.
    """
    frac = np.asarray(frac_coords, dtype=float)
    matrix = np.asarray(lattice_mat, dtype=float)
    rounded = np.around(matrix, decimals=JARVIS_LATTICE_DECIMALS)
    cart = jarvis_cart_coords(frac, matrix)
    n_atoms = len(frac)
    longest = max(_lattice_lengths(rounded))
    radius = float(cutoff)
    while True:  # jarvis's radius: the cutoff, then the longest lattice vector, then doubling
        try:
            found = _nearest_neighbors(frac, cart, matrix, radius, max_neighbors)
            break
        except _FewerThanK:
            radius = longest if radius < longest else 2 * radius
    if found is not None:
        centre, neighbour, image = found
    else:  # undecided by the k-d tree's margins: jarvis's dense loop
        radius = float(cutoff)
        while True:
            centre, neighbour, distance, image = _all_neighbors(frac, cart, matrix, radius)
            counts = np.bincount(centre, minlength=n_atoms)
            if counts.min() >= max_neighbors:
                break
            radius = longest if radius < longest else 2 * radius
        centre, neighbour, image, _ = _keep_k_nearest(centre, neighbour, distance, image, n_atoms, max_neighbors)
    if use_canonize:
        swap = neighbour < centre
        key_src = np.where(swap, neighbour, centre)
        key_dst = np.where(swap, centre, neighbour)
        image = np.where(swap[:, None], -image, image)
    else:
        key_src, key_dst = centre, neighbour
    triples = _unique_rows(np.column_stack([key_src, key_dst, image]))  # the upstream edge *set*, sorted
    s, d, img = triples[:, 0], triples[:, 1], triples[:, 2:].astype(float)
    vec = np.dot(frac[d] + img - frac[s], rounded)
    src = np.column_stack([s, d]).reshape(-1)
    dst = np.column_stack([d, s]).reshape(-1)
    images = np.stack([img, -img], axis=1).reshape(-1, 3)
    vectors = np.stack([vec, -vec], axis=1).reshape(-1, 3)
    return EdgeList(
        src=src.astype(np.int64),
        dst=dst.astype(np.int64),
        images=images.astype(np.int32),
        vectors=vectors.astype(np.float32),
    )


def line_graph_edges(
    src: np.ndarray,
    dst: np.ndarray,
    num_nodes: int,
    allowed: np.ndarray | None = None,
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Line-graph edges (A, B) for every pair of bonds A = (u → v), B = (v → w), backtracking included.

    Same order as upstream ``_line_graph_edges``; ``allowed`` (bool per bond) restricts both A and B.
    ``exclude_self`` drops (A, A) pairs of self-image bonds u → u, as DGL's ``line_graph`` (classic ALIGNN) does.
    """
    allowed_ids = np.arange(len(src)) if allowed is None else np.flatnonzero(allowed)
    sub_src = src[allowed_ids]
    order = _stable_argsort_ids(sub_src, num_nodes)
    sorted_ids = allowed_ids[order]
    sorted_src = sub_src[order]
    nodes = np.arange(num_nodes)
    bucket_start = np.searchsorted(sorted_src, nodes, side="left")
    bucket_end = np.searchsorted(sorted_src, nodes, side="right")
    starts = bucket_start[dst[allowed_ids]]
    counts = bucket_end[dst[allowed_ids]] - starts
    total = int(counts.sum())
    if total == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    lg_src = np.repeat(allowed_ids, counts)
    row_start = np.cumsum(counts) - counts
    offsets = np.arange(total) - np.repeat(row_start, counts)
    lg_dst = sorted_ids[np.repeat(starts, counts) + offsets]
    if exclude_self:
        distinct = lg_src != lg_dst
        lg_src, lg_dst = lg_src[distinct], lg_dst[distinct]
    return lg_src.astype(np.int64), lg_dst.astype(np.int64)


def bond_cosines(vectors: np.ndarray, lg_src: np.ndarray, lg_dst: np.ndarray) -> np.ndarray:
    """Cosine of the angle at the shared atom of bonds ``lg_src`` (u→v) and ``lg_dst`` (v→w), float32.

    Bond lengths are computed once per bond; the dot product sums x, y, z from +0 as ``np.sum(axis=1)``
    does, so the values (signed zeros included) are those of the row-wise formula.
    """
    v = np.asarray(vectors, dtype=np.float32)
    lengths = np.sqrt(np.add.reduce(v * v, axis=1))  # = np.linalg.norm(v, axis=1)
    backward = np.ascontiguousarray(-v.T)  # u→v reversed: v→u, the first arm of the angle at v
    forward = np.ascontiguousarray(v.T)
    num = np.zeros(len(lg_src), dtype=np.float32)
    for axis in range(3):
        num += backward[axis][lg_src] * forward[axis][lg_dst]
    denom = lengths[lg_src] * lengths[lg_dst]
    return np.clip(num / np.maximum(denom, np.float32(1e-12)), -1.0, 1.0).astype(np.float32)
