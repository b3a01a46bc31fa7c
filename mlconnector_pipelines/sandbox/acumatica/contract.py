"""The Default endpoint's contract for the simulated entities: field names and types, keys, versions.

Field lists are Acumatica's own: the OpenAPI/Swagger definitions a site publishes for Default/23.200.001
and Default/24.200.001 (the copies in Acumatica/AcumaticaRESTAPIClientForCSharp, EndpointDefinitions/).
Type codes: S string, D decimal, T date-time, B boolean, I int, H short, L long, G guid; `[X]` a
detail list of entity X; `<X>` a linked entity X. Fields not in a version do not exist there
(24.200.001 added StockItem.LastModifiedDateTime beside StockItem.LastModified).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

_FIELDS = {
    "Account": """AccountCD:S AccountClass:S AccountGroup:S AccountID:I Active:B CashAccount:B ChartOfAccountsOrder:I
        ConsolidationAccount:S CreatedDateTime:T CurrencyID:S Description:S LastModifiedDateTime:T PostOption:S
        RequireUnits:B RevaluationRateType:S Secured:B TaxCategory:S Type:S UseDefaultSubaccount:B""",
    "Subaccount": "Active:B Description:S Secured:B SubaccountCD:S SubaccountID:I",
    "Vendor": """AccountRef:S APAccount:S APSubaccount:S Attributes:[AttributeValue] CashAccount:S
        Contacts:[CustomerContact] CreatedDateTime:T CurrencyID:S CurrencyRateType:S EnableCurrencyOverride:B
        EnableRateOverride:B F1099Box:S F1099Vendor:B FATCA:B FOBPoint:S ForeignEntity:B LandedCostVendor:B
        LastModifiedDateTime:T LeadTimedays:H LegalName:S LocationName:S MainContact:<Contact> MaxReceipt:D
        MinReceipt:D ParentAccount:S PaymentBy:S PaymentInstructions:[BusinessAccountPaymentInstructionDetail]
        PaymentLeadTimedays:H PaymentMethod:S PaySeparately:B PrimaryContact:<Contact> PrintOrders:B
        ReceiptAction:S ReceivingBranch:S RemittanceAddressOverride:B RemittanceContact:<Contact>
        RemittanceContactOverride:B SendOrdersbyEmail:B ShippingContactOverride:B ShippingAddressOverride:B
        ShippingContact:<Contact> ShippingTerms:S ShipVia:S Status:S TaxCalculationMode:S TaxRegistrationID:S
        TaxZone:S Terms:S ThresholdReceipt:D VendorClass:S VendorID:S VendorIsLaborUnion:B VendorIsTaxAgency:B
        VendorName:S Warehouse:S""",
    "VendorClass": """Attributes:[BusinessAccountClassAttributeDetail] ClassID:S CreatedDateTime:T Description:S
        LastModifiedDateTime:T""",
    "Bill": """Amount:D Applications:[BillApplicationDetail] ApprovedForPayment:B Balance:D BranchID:S CashAccount:S
        CurrencyID:S Date:T Description:S Details:[BillDetail] DueDate:T Hold:B LocationID:S PostPeriod:S Project:S
        ReferenceNbr:S Status:S TaxDetails:[BillTaxDetail] TaxTotal:D Terms:S Type:S Vendor:S VendorRef:S
        IsTaxValid:B LastModifiedDateTime:T""",
    "BillDetail": """Account:S Amount:D Branch:S CalculateDiscountsOnImport:B CostCode:S Description:S ExtendedCost:D
        InventoryID:S LCLineNbr:I LCNbr:S LCType:S NonBillable:B POLine:I POOrderNbr:S POOrderType:S
        POReceiptLine:I POReceiptType:S POReceiptNbr:S Project:S ProjectTask:S Qty:D Subaccount:S TaxCategory:S
        TransactionDescription:S UnitCost:D UOM:S""",
    "Check": """ApplicationDate:T CashAccount:S CurrencyID:S Description:S Details:[CheckDetail]
        History:[CheckHistoryDetail] Hold:B PaymentAmount:D PaymentMethod:S PaymentRef:S ReferenceNbr:S Status:S
        Type:S UnappliedBalance:D Vendor:S LastModifiedDateTime:T""",
    "CheckDetail": "AmountPaid:D Balance:D CashDiscountBalance:D DocLineNbr:I DocType:S ReferenceNbr:S",
    "Payment": """ApplicationDate:T ApplicationHistory:[PaymentApplicationHistoryDetail] AppliedToDocuments:D
        Branch:S CardAccountNbr:I CashAccount:S Charges:[PaymentCharge]
        CreditCardProcessingInfo:[CreditCardProcessingDetail] CurrencyID:S CustomerID:S Description:S
        DocumentsToApply:[PaymentDetail] Hold:B IsCCPayment:B OrdersToApply:[PaymentOrderDetail] PaymentAmount:D
        PaymentMethod:S PaymentRef:S ReferenceNbr:S Status:S Type:S LastModifiedDateTime:T ProcessingCenterID:S
        SaveCard:B CreditCardTransactionInfo:[CreditCardTransactionDetail] ExternalRef:S OrigTransaction:S
        BranchID:S CustomerLocationID:S IsNewCard:B NoteID:G AvailableBalance:D AppliedToOrders:D""",
    "StockItem": """ABCCode:S Attributes:[AttributeValue] AutoIncrementalValue:S AverageCost:D BaseUOM:S
        Boxes:[BoxStockItem] Categories:[CategoryStockItem] COGSAccount:S COGSSubaccount:S Content:S
        CountryOfOrigin:S CrossReferences:[InventoryItemCrossReference] CurrentStdCost:D DefaultIssueLocationID:S
        DefaultPrice:D DefaultReceiptLocationID:S DefaultSubitem:S DefaultWarehouseID:S DeferralAccount:S
        DeferralSubaccount:S Description:S DimensionVolume:D DimensionWeight:D DiscountAccount:S
        DiscountSubaccount:S ImageUrl:S InventoryAccount:S InventoryID:S InventorySubaccount:S IsAKit:B ItemClass:S
        ItemStatus:S ItemType:S LandedCostVarianceAccount:S LandedCostVarianceSubaccount:S LastCost:D
        LastModified:T LastModifiedDateTime:T LastStdCost:D LotSerialClass:S Markup:D MaxCost:D MinCost:D
        MinMarkup:D MSRP:D PackagingOption:S PackSeparately:B PendingStdCost:D POAccrualAccount:S
        POAccrualSubaccount:S PostingClass:S PriceClass:S PriceManager:S PriceWorkgroup:S ProductManager:S
        ProductWorkgroup:S PurchasePriceVarianceAccount:S PurchasePriceVarianceSubaccount:S PurchaseUOM:S
        ReasonCodeSubaccount:S ReplenishmentParameters:[ReplenishmentParameterStockItem] SalesAccount:S
        SalesSubaccount:S SalesUOM:S StandardCostRevaluationAccount:S StandardCostRevaluationSubaccount:S
        StandardCostVarianceAccount:S StandardCostVarianceSubaccount:S SubjectToCommission:B TaxCategory:S
        TariffCode:S UOMConversions:[InventoryItemUOMConversion] UseOnEntry:B ValuationMethod:S
        VendorDetails:[StockItemVendorDetail] VolumeUOM:S WarehouseDetails:[StockItemWarehouseDetail] WeightUOM:S
        CurySpecificMSRP:D CurySpecificPrice:D Availability:S CustomURL:S ExportToExternal:B
        FileURLs:[InventoryFileUrls] MetaDescription:S MetaKeywords:S NoteID:G PageTitle:S SearchKeywords:S
        TemplateItemID:S Visibility:S NotAvailable:S""",
    "JournalTransaction": """BatchNbr:S BranchID:S CreatedDateTime:T CurrencyID:S Description:S
        Details:[JournalTransactionDetail] Hold:B LastModifiedDateTime:T LedgerID:S Module:S PostPeriod:S Status:S
        TransactionDate:T""",
    "JournalTransactionDetail": """Account:S BranchID:S CostCode:S CreditAmount:D DebitAmount:D Description:S
        IsNonPM:B LineNbr:I NonBillable:B Project:S ProjectTask:S ProjectTransactionID:L Qty:D ReferenceNbr:S
        Subaccount:S TransactionDescription:S UOM:S VendorOrCustomer:S""",
    "FinancialPeriod": """CreatedDateTime:T Details:[FinancialPeriodDetail] FinancialYear:S LastModifiedDateTime:T
        NbrOfPeriods:H StartDate:T UserDefinedPeriods:B""",
    "FinancialPeriodDetail": """AdjustmentPeriod:B ClosedInAP:B ClosedInAR:B ClosedInCA:B ClosedInFA:B ClosedInIN:B
        Description:S EndDate:T FinancialPeriodID:S LengthInDays:I PeriodNbr:S StartDate:T Status:S""",
    "CompaniesStructure": "Results:[CompaniesStructureDetail]",
    "CompaniesStructureDetail": """BaseCurrencyID:S BranchCountry:S BranchID:S BranchName:S BranchStatus:B
        CompanyID:S CompanyName:S CompanyStatus:B CompanyType:S""",
    "Currency": """Active:B CreatedDateTime:T CurrencyID:S CurrencySymbol:S DecimalPrecision:H Description:S
        LastModifiedDateTime:T UseForAccounting:B""",
    "Ledger": """Branches:[LedgerBranches] Companies:[LedgerCompanies] ConsolidationSource:B Currency:S
        Description:S LastModifiedDateTime:T LedgerID:S Type:S""",
}

# Fields a version does not have (absent from its Swagger definitions).
_MISSING = {
    "23.200.001": {"StockItem": {"LastModifiedDateTime"}, "BillDetail": {"LCLineNbr", "LCNbr", "LCType"}},
}

# Date-only fields: the time part is always midnight.
_DATES = {"Date", "DueDate", "TransactionDate", "ApplicationDate", "StartDate", "EndDate"}
# The stamps the server sets on every save (StockItem keeps both in 24.200.001).
_STAMPS = ("LastModified", "LastModifiedDateTime")
# Amounts held at the base currency's precision (USD: 2), rounded half away from zero on entry.
MONEY = frozenset(
    {"Amount", "Balance", "ExtendedCost", "TaxTotal", "DebitAmount", "CreditAmount", "PaymentAmount", "AmountPaid"}
    | {"UnappliedBalance", "AppliedToDocuments", "AvailableBalance", "AppliedToOrders", "CashDiscountBalance"}
)


@dataclass(frozen=True)
class Entity:
    name: str
    label: str  # how Acumatica's messages name the record
    keys: tuple[str, ...]  # the key fields, in URL order
    fields: dict[str, str]  # field -> type code
    numbered: str | None = None  # the key field a numbering sequence fills
    inquiry: bool = False  # read with PUT, like a form with a filter and results

    @property
    def details(self) -> dict[str, str]:
        """Detail lists -> their entity."""
        return {f: t[1:-1] for f, t in self.fields.items() if t.startswith("[")}

    @property
    def scalars(self) -> dict[str, str]:
        return {f: t for f, t in self.fields.items() if t[0] not in "[<"}

    @property
    def stamps(self) -> tuple[str, ...]:
        return tuple(f for f in _STAMPS if f in self.fields)

    def is_date(self, field: str) -> bool:
        return field in _DATES


_TOP = {  # entity -> (label, keys, numbered key)
    "Account": ("Account", ("AccountCD",), None),
    "Subaccount": ("Subaccount", ("SubaccountCD",), None),
    "Vendor": ("Vendor", ("VendorID",), None),
    "VendorClass": ("Vendor Class", ("ClassID",), None),
    "Bill": ("Bill", ("Type", "ReferenceNbr"), "ReferenceNbr"),
    "Check": ("Payment", ("Type", "ReferenceNbr"), "ReferenceNbr"),
    "Payment": ("Payment", ("Type", "ReferenceNbr"), "ReferenceNbr"),
    "StockItem": ("Stock Item", ("InventoryID",), None),
    "JournalTransaction": ("Batch", ("Module", "BatchNbr"), "BatchNbr"),
    "FinancialPeriod": ("Financial Year", ("FinancialYear",), None),
    "Ledger": ("Ledger", ("LedgerID",), None),
    "Currency": ("Currency", ("CurrencyID",), None),
    "CompaniesStructure": ("Companies Structure", (), None),
}
DETAIL_KEYS = {"JournalTransactionDetail": "LineNbr", "FinancialPeriodDetail": "PeriodNbr"}


def _parse(spec: str, missing: set[str]) -> dict[str, str]:
    pairs = (token.split(":") for token in spec.split())
    return {name: kind for name, kind in pairs if name not in missing}


@cache
def entities(version: str) -> dict[str, Entity]:
    """The top-level entities of Default/<version>, by name."""
    missing = _MISSING.get(version, {})
    result = {}
    for name, (label, keys, numbered) in _TOP.items():
        fields = _parse(_FIELDS[name], missing.get(name, set()))
        result[name] = Entity(name, label, keys, fields, numbered, inquiry=name == "CompaniesStructure")
    return result


@cache
def detail(version: str, name: str) -> Entity:
    missing = _MISSING.get(version, {})
    key = DETAIL_KEYS.get(name)
    return Entity(name, name, (key,) if key else (), _parse(_FIELDS.get(name, ""), missing.get(name, set())))


LATEST = "24.200.001"  # the model holds every field of the latest contract; older versions show fewer
