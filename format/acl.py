"""POSIX ACL xattr values (system.posix_acl_access, system.posix_acl_default): a header
and 8-byte entries, exactly the posix_acl_xattr form Linux hands through getxattr(2) and
setxattr(2), little-endian.  The logic over them is ctrfs.acl."""
import struct

from construct import Int16ul, Int32ul, Struct

AclHeader = Struct(
    "version" / Int32ul,             # ACL_EA_VERSION
)
ACL_HEADER_SIZE = 4
assert AclHeader.sizeof() == ACL_HEADER_SIZE

AclEntry = Struct(                   # follows the header, count = (size - 4) / 8
    "tag" / Int16ul,                 # ACL_USER_OBJ, ACL_USER, ... ACL_OTHER
    "perm" / Int16ul,                # read 4, write 2, execute 1
    "id" / Int32ul,                  # uid (ACL_USER), gid (ACL_GROUP), else ACL_UNDEFINED_ID
)
ACL_ENTRY_SIZE = 8
assert AclEntry.sizeof() == ACL_ENTRY_SIZE

ACL_HEADER = struct.Struct("<I")
ACL_ENTRY = struct.Struct("<HHI")
assert (ACL_HEADER.size, ACL_ENTRY.size) == (ACL_HEADER_SIZE, ACL_ENTRY_SIZE)
