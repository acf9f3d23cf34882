//! EC private keys in Consul's encoding.
//!
//! Consul writes its keys as SEC1 (`-----BEGIN EC PRIVATE KEY-----`, Go's
//! `x509.MarshalECPrivateKey`), while ring, which generates and signs here,
//! reads and writes only PKCS#8. The two differ by a wrapper: PKCS#8 holds
//! the SEC1 structure inside an OCTET STRING, beside the algorithm and the
//! curve. These conversions move the curve between the two places (SEC1
//! names it in its `[0]` parameters), so that a key written by cairn reads
//! in Consul's tools and a CA key made by `consul tls ca create` signs here.

/// `id-ecPublicKey` (1.2.840.10045.2.1), DER-encoded with its tag.
const EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// One DER element: its tag, and the bytes of its value.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    /// The whole element, tag and length included.
    raw: &'a [u8],
}

/// Reads one element off the front of `input`.
fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let bad = || "malformed DER".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad());
    }
    let header = input.len() - rest.len();
    Ok((
        Tlv {
            tag,
            value: &rest[..len],
            raw: &input[..header + len],
        },
        &rest[len..],
    ))
}

/// Reads the elements of a constructed value.
fn children(mut value: &[u8]) -> Result<Vec<Tlv<'_>>, String> {
    let mut out = Vec::new();
    while !value.is_empty() {
        let (tlv, rest) = read(value)?;
        out.push(tlv);
        value = rest;
    }
    Ok(out)
}

/// Encodes one element.
fn element(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(value);
    out
}

const SEQUENCE: u8 = 0x30;
const OCTET_STRING: u8 = 0x04;
const CURVE: u8 = 0xa0;

/// A PKCS#8 EC key (as ring writes it) as SEC1 DER with its curve named.
pub fn pkcs8_to_sec1(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    let (outer, _) = read(pkcs8)?;
    let parts = children(outer.value)?;
    let [_version, algorithm, key, ..] = parts.as_slice() else {
        return Err("not a PKCS#8 key".into());
    };
    let alg = children(algorithm.value)?;
    let [oid, curve] = alg.as_slice() else {
        return Err("not an EC key".into());
    };
    if oid.raw != EC_PUBLIC_KEY || key.tag != OCTET_STRING {
        return Err("not an EC key".into());
    }
    let (inner, _) = read(key.value)?;
    let fields = children(inner.value)?;
    let mut body = Vec::new();
    for f in &fields {
        if f.tag == CURVE {
            continue;
        }
        if f.tag == 0xa1 {
            // Parameters go before the public key.
            body.extend(element(CURVE, curve.raw));
        }
        body.extend_from_slice(f.raw);
    }
    if !fields.iter().any(|f| f.tag == 0xa1) {
        body.extend(element(CURVE, curve.raw));
    }
    Ok(element(SEQUENCE, &body))
}

/// A SEC1 EC key (Go's `MarshalECPrivateKey`) as PKCS#8 DER.
pub fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, String> {
    let (inner, _) = read(sec1)?;
    let fields = children(inner.value)?;
    let curve = fields
        .iter()
        .find(|f| f.tag == CURVE)
        .ok_or("the EC key does not name its curve")?;
    let mut algorithm = EC_PUBLIC_KEY.to_vec();
    algorithm.extend_from_slice(curve.value);
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(element(SEQUENCE, &algorithm));
    body.extend(element(OCTET_STRING, inner.raw));
    Ok(element(SEQUENCE, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_key_round_trips_through_sec1_and_signs_again() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 = key.serialize_der();
        let sec1 = pkcs8_to_sec1(&pkcs8).unwrap();
        // Go's layout: version 1, the 32-byte scalar, [0] the P-256 OID, [1]
        // the public point.
        assert_eq!(&sec1[..7], &[0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20]);
        assert_eq!(
            &sec1[39..51],
            &[0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
        );
        let back = sec1_to_pkcs8(&sec1).unwrap();
        let again = rcgen::KeyPair::try_from(back.as_slice()).unwrap();
        assert_eq!(again.public_key_raw(), key.public_key_raw());
        // rustls reads the SEC1 form as it is, too.
        let der = rustls::pki_types::PrivateKeyDer::Sec1(sec1.into());
        assert!(rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(der)
            .is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x03, 0x02, 0x01],
        ] {
            assert!(pkcs8_to_sec1(bad).is_err());
            assert!(sec1_to_pkcs8(bad).is_err());
        }
    }
}
