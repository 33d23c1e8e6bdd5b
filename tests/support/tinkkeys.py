"""Google's own Tink library, set up to read and write the Tink part of our ciphertext."""

from tink import cleartext_keyset_handle, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2


def tink_aes256(key: bytes, segment_size: int) -> streaming_aead.StreamingAead:
    """Tink's StreamingAead for a raw AES256_GCM_HKDF key (32-byte key and derived keys, HKDF-SHA256)."""
    return tink_streaming(key, segment_size)


def tink_streaming(
    key: bytes, segment_size: int, derived_key_size: int = 32, hkdf_hash: str = "SHA256"
) -> streaming_aead.StreamingAead:
    """Tink's StreamingAead for a raw AES-GCM-HKDF streaming key with any of Tink's parameters
    (``hkdf_hash`` one of "SHA1", "SHA256", "SHA512"), as tink-java's test vectors use them."""
    streaming_aead.register()
    key_proto = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(version=0, key_value=key)
    key_proto.params.ciphertext_segment_size = segment_size
    key_proto.params.derived_key_size = derived_key_size
    key_proto.params.hkdf_hash_type = common_pb2.HashType.Value(hkdf_hash)
    keyset = tink_pb2.Keyset(primary_key_id=1)
    entry = keyset.key.add()
    entry.key_data.type_url = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"
    entry.key_data.value = key_proto.SerializeToString()
    entry.key_data.key_material_type = tink_pb2.KeyData.SYMMETRIC
    entry.status, entry.key_id, entry.output_prefix_type = tink_pb2.ENABLED, 1, tink_pb2.RAW
    return cleartext_keyset_handle.from_keyset(keyset).primitive(streaming_aead.StreamingAead)
