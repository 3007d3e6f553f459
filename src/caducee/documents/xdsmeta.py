"""IHE XDS metadata identifiers (IHE ITI TF-3 §4.2.5) and the CDA-header-to-XDS mapping.

The mapping follows the ANS annex "Lien entre l'en-tête CDA et les métadonnées XDS" as
expressed by the ANS stylesheet ``CDAHeaderToXDM.xsl``: typeCode from ``code``,
confidentialityCode, healthcareFacilityTypeCode from ``healthCareFacility/code``,
practiceSettingCode from ``standardIndustryClassCode``, eventCodeList from
``serviceEvent/code``, formatCode from the model ``templateId``. Where that stylesheet departs
from IHE TF-3 (it labels the patientId with the uniqueId scheme UUID) IHE TF-3 wins.
"""

from __future__ import annotations

__all__ = [
    "ASSOC_HAS_MEMBER",
    "DE_AUTHOR",
    "DE_CLASS",
    "DE_CONFIDENTIALITY",
    "DE_EVENT",
    "DE_FACILITY",
    "DE_FORMAT",
    "DE_OBJECT_TYPE",
    "DE_PATIENT_ID",
    "DE_PRACTICE",
    "DE_TYPE",
    "DE_UNIQUE_ID",
    "FORMAT_BY_TEMPLATE",
    "FORMAT_DEFAULT",
    "FORMAT_PDF",
    "NS_LCM",
    "NS_RIM",
    "SS_AUTHOR",
    "SS_CONTENT_TYPE",
    "SS_NODE",
    "SS_PATIENT_ID",
    "SS_SOURCE_ID",
    "SS_UNIQUE_ID",
]

NS_LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
NS_RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"

DE_OBJECT_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
ASSOC_HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"

_CISIS = "1.2.250.1.213.1.1.4.2.282"
_IHE = "1.3.6.1.4.1.19376.1.2.3"

#: templateId -> (formatCode, codingScheme, display), from the ANS stylesheet's matrix.
FORMAT_BY_TEMPLATE: dict[str, tuple[str, str, str]] = {
    "1.3.6.1.4.1.19376.1.3.3": ("urn:ihe:lab:xd-lab:2008", _IHE, "CR de biologie"),
    "1.2.250.1.213.1.1.1.55": ("urn:ihe:lab:xd-lab:2008", _IHE, "CR de biologie"),
    "1.2.250.1.213.1.1.1.2.1.1": ("urn:asip:ci-sis:avk:2009", _CISIS, "Traitement AVK"),
    "1.2.250.1.213.1.1.1.2.1.2": ("urn:asip:ci-sis:tap:2009", _CISIS, "Traitement TAP"),
    "1.2.250.1.213.1.1.1.2.1.3": ("urn:asip:ci-sis:dci:2009", _CISIS, "DCI"),
    "1.2.250.1.213.1.1.1.2.1.4": ("urn:asip:ci-sis:psc:2009", _CISIS, "Stimulateur cardiaque"),
    "1.2.250.1.213.1.1.1.2.1.5": ("urn:asip:ci-sis:ppv:2009", _CISIS, "Prothèse valvulaire"),
    "1.2.250.1.213.1.1.1.10": ("urn:ihe:pcc:ic:2009", _IHE, "Carnet de vaccination"),
    "1.2.250.1.213.1.1.1.13": ("urn:asip:ci-sis:vsm:2012", _CISIS, "Synthèse médicale"),
    "1.2.250.1.213.1.1.1.5.1": ("urn:ihe:qrph:hbs:2009", _IHE, "Certificat du 8e jour"),
    "1.2.250.1.213.1.1.1.5.2": ("urn:asip:ci-sis:cs9:2012", _CISIS, "Certificat du 9e mois"),
    "1.2.250.1.213.1.1.1.9": ("urn:asip:ci-sis:idap:2011", _CISIS, "Directives anticipées"),
    "1.2.250.1.213.1.1.1.8": ("urn:asip:ci-sis:frcp:2011", _CISIS, "Fiche RCP"),
    "1.2.250.1.213.1.1.1.3.1": ("urn:asip:ci-sis:crh:2009", _CISIS, "CR d'hospitalisation"),
    "1.3.6.1.4.1.19376.1.8.1.1.1": ("urn:ihe:pat:apsr:all:2010", _IHE, "CR d'anatomopathologie"),
}
FORMAT_DEFAULT = ("urn:asipSante:modelesHorsProfils:2011", _CISIS, "Modèle hors profils")
FORMAT_PDF = ("urn:ihe:iti:xds-sd:pdf:2008", _IHE, "Document PDF")
