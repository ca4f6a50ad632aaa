"""The contract between the task definitions the components write and the images `estate lock` admits:
the user every task runs as, and its only writable path (README: "The image contract")."""

# A fixed unprivileged UID:GID: a compromised process owns nothing on the (read-only) root filesystem.
# The image must create SCRATCH_PATH, give it to this user and declare it as a VOLUME (Fargate then
# copies its owner into the task's empty bind mount, which is otherwise root-owned).
CONTAINER_USER = "10001:10001"
CONTAINER_UID = CONTAINER_USER.split(":", 1)[0]
SCRATCH_PATH = "/tmp"   # the task's only writable path: the mount point of its `tmp` volume
