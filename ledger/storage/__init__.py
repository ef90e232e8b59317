"""Plumbing below the rules: every LevelDB key layout (``schema``) and the key-value stores; the only
package that imports plyvel. It knows nothing of the services or the node above it."""
