"""Rigid-body drop: objects fall a few millimetres onto the floor and are simulated until they rest.

Bullet only advances when frames are visited in order, so the loop steps frame by frame and stops as soon
as nothing moves any more.
"""

from __future__ import annotations

import bpy
import numpy as np

from generation.blender.objects import world_matrix


def simulate_drop(objects: list[bpy.types.Object], max_frames: int = 250, rest_tolerance: float = 2e-4) -> dict:
    """Simulate until every object moves less than `rest_tolerance` (metres, per frame) for 5 frames.

    Leaves the objects at their resting poses with the rigid-body world removed, and returns
    {"frames": n, "settled": bool}.
    """
    scene = bpy.context.scene
    with bpy.context.temp_override(scene=scene):
        bpy.ops.rigidbody.world_add()
    world = scene.rigidbody_world
    world.collection = bpy.data.collections.new("rigid_bodies")
    world.substeps_per_frame = 20
    world.solver_iterations = 20
    world.point_cache.frame_start = 1
    world.point_cache.frame_end = max_frames + 1
    scene.frame_start, scene.frame_end = 1, max_frames + 1

    collider = _floor_collider()
    for obj in [*objects, collider]:
        world.collection.objects.link(obj)
        with bpy.context.temp_override(object=obj, active_object=obj, selected_objects=[obj], scene=scene):
            bpy.ops.rigidbody.object_add()
        body = obj.rigid_body
        body.collision_shape = "CONVEX_HULL" if obj is not collider else "BOX"
        body.friction = 0.9
        body.restitution = 0.0
        body.linear_damping = 0.2
        body.angular_damping = 0.3
        body.use_margin = True
        body.collision_margin = 0.0005
    collider.rigid_body.type = "PASSIVE"

    previous = np.stack([world_matrix(o)[:3, 3] for o in objects])
    still_frames, frame = 0, 1
    for frame in range(1, max_frames + 1):
        scene.frame_set(frame)
        current = np.stack([world_matrix(o)[:3, 3] for o in objects])
        still_frames = still_frames + 1 if np.abs(current - previous).max() < rest_tolerance else 0
        previous = current
        if still_frames >= 5 and frame > 10:
            break
    poses = [world_matrix(o) for o in objects]
    with bpy.context.temp_override(scene=scene):
        bpy.ops.rigidbody.world_remove()
    bpy.data.objects.remove(collider)
    from generation.blender.objects import set_pose

    for obj, pose in zip(objects, poses, strict=True):
        set_pose(obj, pose)
    return {"frames": frame, "settled": still_frames >= 5}


def _floor_collider() -> bpy.types.Object:
    """A thick passive box under z = 0 (a plane has no volume for the solver); never rendered."""
    import bmesh

    mesh = bpy.data.meshes.new("floor_collider")
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new("floor_collider", mesh)
    obj.scale = (20.0, 20.0, 1.0)
    obj.location = (0.0, 0.0, -0.5)
    obj.hide_render = True
    bpy.context.scene.collection.objects.link(obj)
    return obj
