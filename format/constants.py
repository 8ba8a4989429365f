"""Every on-disk constant of ctrfs, in one place (spec/FORMAT.md repeats them)."""

FORMAT_VERSION = 2

# Magics (8 bytes for whole-block structures, 4 for tree nodes).  A test keeps them unique.
SUPERBLOCK_MAGIC = b"CTRFS\x00SB"
CHECKPOINT_MAGIC = b"CTRFS\x00CP"
SUMMARY_MAGIC = b"CTRFS\x00LS"
CALOG_MAGIC = b"CTRFS\x00CL"
NODE_MAGIC = b"CTND"

# Geometry.  Block 0 holds the superblock, the last block of the device its mirror.
DEFAULT_BLOCK_SIZE = 4096
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 65536
DEFAULT_SEGMENT_BLOCKS = 256          # 1 MiB segments at 4 KiB blocks
MIN_SEGMENT_BLOCKS = 16
MAX_SEGMENT_BLOCKS = 65536
SUPERBLOCK_BLOCK = 0
CHECKPOINT_SLOTS = (1, 2)             # block numbers of the two alternating checkpoint slots
FIRST_SEGMENT_BLOCK = 4               # blocks 0..3 are the fixed area (block 3 reserved)
MIN_SEGMENTS = 8                      # smallest device mkfs accepts
RESERVED_SEGMENTS = 4                 # free segments only the cleaner and commit may use
CHECKPOINT_BACKUPS = 3                # older root sets kept in each checkpoint

# Feature flags, ext4 style: an unknown incompat bit refuses the mount, an unknown
# ro_compat bit refuses a read-write mount, an unknown compat bit is ignored.
COMPAT_NONE = 0
RO_COMPAT_NONE = 0
RO_COMPAT_IMAGE_META = 1 << 0         # FS trees may hold ITEM_IMAGE items (OCI config, layer ids) under ino 0
RO_COMPAT_LAYER_SOURCE = 1 << 1       # layer trees may hold an IMAGE_SOURCE item (the blob the layer came in)
INCOMPAT_INLINE_DATA = 1 << 0         # small files and symlinks live inside the inode item
ALL_COMPAT = 0
ALL_RO_COMPAT = RO_COMPAT_IMAGE_META | RO_COMPAT_LAYER_SOURCE
ALL_INCOMPAT = INCOMPAT_INLINE_DATA

# Tree kinds (node header `tree` field and segment summary `owner`).
TREE_FS = 1          # one per image, layer or writable tree: inodes, dirents, xattrs, block maps
TREE_CA = 2          # content-address index: blake3 -> location, refcount
TREE_SNAP = 3        # snapshot/ref table: name -> root of an FS tree
TREE_USAGE = 4       # segment usage table
TREE_REMAP = 5       # inode remap table: (tree, visible ino) -> stored ino
TREE_KINDS = (TREE_FS, TREE_CA, TREE_SNAP, TREE_USAGE, TREE_REMAP)
OWNER_CALOG = 6      # summary owner of CA log blocks (a chain of blocks, not a tree)
SYSTEM_TREES = (TREE_SNAP, TREE_CA, TREE_USAGE, TREE_REMAP)

# Block kinds (segment summary entries and content-address entries).
BLOCK_FREE = 0
BLOCK_DATA = 1
BLOCK_NODE = 2       # FS tree node (content addressed, reference counted)
BLOCK_SYSNODE = 3    # system tree node (owned by the checkpoint)
BLOCK_KINDS = (BLOCK_DATA, BLOCK_NODE, BLOCK_SYSNODE)

# blake3 derive_key contexts: domain separation between object kinds.  No device
# UUID goes in, so equal blocks have equal addresses on every device.
HASH_CONTEXT_DATA = "ctrfs v2 data block"
HASH_CONTEXT_NODE = "ctrfs v2 tree node"
HASH_CONTEXT_CALOG = "ctrfs v2 ca log"
CALOG_LIMIT = 4096                    # CA log entries before a commit merges them into the CA tree
HASH_SIZE = 32
HASH_PREFIX_SIZE = 12                 # bytes of the hash kept in a segment summary entry

# FS tree keys are (ino field u64 BE, item type u8, subkey).  The ino field's top bit is
# the key class: clear for the namespace (super, inodes, xattrs, dirents, image metadata),
# set for block maps (type >= ITEM_BLOCK, the last type), so every block-map item sorts
# after every namespace item and a walk reads namespace leaves only.
KEY_CLASS_DATA = 1 << 63              # ino field bit of ITEM_BLOCK keys; clear in every other key
MAX_INO = KEY_CLASS_DATA - 1          # largest inode number (the class bit is not part of it)

# FS tree item types: the byte after the ino field in every FS tree key.
ITEM_SUPER = 0       # key (0, ITEM_SUPER): per-tree counters (next inode number)
ITEM_INODE = 1
ITEM_XATTR = 2
ITEM_DIRENT = 3
ITEM_IMAGE = 4       # key (0, ITEM_IMAGE, subkey): OCI image metadata of the tree (format/image.py)
ITEM_BLOCK = 5       # the last type: its keys (and bounds past it) carry KEY_CLASS_DATA
ITEM_TYPES = (ITEM_SUPER, ITEM_INODE, ITEM_XATTR, ITEM_DIRENT, ITEM_IMAGE, ITEM_BLOCK)

# ITEM_IMAGE subkeys (the byte after the item type).
IMAGE_CONFIG = 0x43                   # 'C' + piece number (u32 BE): the OCI config JSON, in pieces
IMAGE_LAYER = 0x4C                    # 'L': ImageLayer of the layer applied last
IMAGE_CONFIG_PIECE = 2000             # config bytes per item (key and all fit a leaf item of the smallest block size)
IMAGE_RECIPE = 0x52                   # 'R' + piece number (u32 BE): the layer's tar recipe (zstd), in pieces
IMAGE_RECIPE_PIECE = 2000             # recipe bytes per item (the same bound)
RECIPE_MAGIC = b"CTRR"                # the recipe's first bytes (after zstd), then RECIPE_VERSION
RECIPE_VERSION = 1
IMAGE_SOURCE = 0x53                   # 'S': LayerSource, the descriptor of the blob the layer was imported from
RECIPE_END, RECIPE_RAW, RECIPE_FILE, RECIPE_ZEROS = 0, 1, 2, 3   # recipe record tags

# POSIX ACLs: the values of the xattrs system.posix_acl_access / system.posix_acl_default,
# Linux's posix_acl_xattr layout (what getxattr(2) returns), so they pass through unchanged.
ACL_EA_VERSION = 2                    # AclHeader.version
ACL_USER_OBJ = 0x01                   # tag: the owner
ACL_USER = 0x02                       # tag: a named user (id = uid)
ACL_GROUP_OBJ = 0x04                  # tag: the owning group
ACL_GROUP = 0x08                      # tag: a named group (id = gid)
ACL_MASK = 0x10                       # tag: upper bound for named entries and the owning group
ACL_OTHER = 0x20                      # tag: everyone else
ACL_TAGS = (ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER)
ACL_UNDEFINED_ID = 0xFFFFFFFF         # id of the entries that name no user or group
ACL_PERM_BITS = 0o7                   # read 4, write 2, execute 1

# Inode flags.
INODE_INLINE = 1 << 0                 # file data / symlink target stored in the inode item

# Snapshot kinds.
SNAP_IMAGE = 1       # immutable image or layer
SNAP_WRITABLE = 2    # a writable tree (what a read-write mount works on)
SNAP_KINDS = (SNAP_IMAGE, SNAP_WRITABLE)
DEFAULT_TREE_NAME = b"@default"       # the writable tree mkfs creates

# Segment states (usage table).
SEG_FREE = 0
SEG_OPEN = 1         # being filled by the log head
SEG_FULL = 2
SEG_STATES = (SEG_FREE, SEG_OPEN, SEG_FULL)

# Reserved inode numbers.
ROOT_INO = 1
FIRST_INO = 2

# Limits.
NAME_MAX = 255
LABEL_MAX = 64
SNAP_NAME_MAX = 255
INLINE_MAX = 1024                     # files up to this size are stored inline
XATTR_NAME_MAX = 255
NODE_HEADER_SIZE = 32
